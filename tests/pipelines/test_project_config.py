"""The project's configuration is consistent: DVC stages, Kedro pipelines, catalog and parameters agree."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.project import configure_project
from kedro.framework.startup import bootstrap_project

from sstkd.pipeline_registry import configured_methods

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pipelines():
    bootstrap_project(ROOT)
    configure_project("sstkd")
    from sstkd.pipeline_registry import register_pipelines

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return register_pipelines()
    finally:
        os.chdir(cwd)


def test_every_dvc_stage_runs_a_registered_pipeline_and_its_outputs_are_catalog_paths(pipelines):
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    catalog = yaml.safe_load((ROOT / "conf/base/catalog.yml").read_text())
    catalog_paths = {entry.get("filepath") or entry.get("path") or entry.get("dataset", {}).get("filepath")
                     for entry in catalog.values()}
    for name, stage in stages.items():
        assert stage["cmd"] == f"kedro run --pipelines {name}" and name in pipelines
        for out in stage.get("outs", []):
            out = out if isinstance(out, str) else next(iter(out))
            assert out in catalog_paths or out == "data/06_models/students", out
        for entry in stage.get("params", []):
            for path, keys in entry.items():
                parameters = yaml.safe_load((ROOT / path).read_text())
                assert all(key in parameters for key in keys), (path, keys)


def test_dvc_understands_the_stages():
    dvc = Path(sys.executable).with_name("dvc")
    result = subprocess.run([str(dvc), "dag"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "distillation" in result.stdout


def test_default_pipeline_chains_every_stage(pipelines):
    default = pipelines["__default__"]
    names = {node.name for node in default.nodes}
    assert {"generate_texture_mosaics", "build_validated_manifest", "train_teacher", "sstkd.train_student",
            "evaluate_models", "build_report"} <= names
    assert default.outputs() >= {"report_table", "metrics"} or "metrics" in default.all_outputs()


@pytest.mark.parametrize("env", ["base", "tiny"])
def test_every_configured_method_is_defined(env):
    methods = configured_methods(ROOT / "conf", env=env if env != "base" else "local")
    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env=env,
                               merge_strategy={"parameters": "soft"})
    assert set(methods) <= set(loader["parameters"]["distillation"]["methods"])
