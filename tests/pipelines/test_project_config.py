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


def _stages(globals_file: str = "conf/base/globals.yml") -> tuple[dict, dict]:
    """dvc.yaml's stages with its ``vars`` (the env's globals) substituted, and those vars."""
    variables = yaml.safe_load((ROOT / globals_file).read_text())
    text = (ROOT / "dvc.yaml").read_text()
    for key, value in variables.items():
        text = text.replace("${" + key + "}", str(value))
    return yaml.safe_load(text)["stages"], variables


def _catalog_paths(env: str) -> dict[str, str]:
    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env=env,
                               merge_strategy={"parameters": "soft", "catalog": "destructive"})
    return {name: entry.get("filepath") or entry.get("path") or entry.get("dataset", {}).get("filepath")
            for name, entry in loader["catalog"].items()}


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("env", ["local", "tiny"])
def test_every_dvc_stage_runs_a_registered_pipeline_and_its_outputs_are_catalog_paths(pipelines, env):
    stages, variables = _stages("conf/base/globals.yml" if env == "local" else f"conf/{env}/globals.yml")
    assert variables["kedro_env"] == env
    catalog = _catalog_paths(env)
    paths = set(catalog.values())
    for name, stage in stages.items():
        assert stage["cmd"] == f"kedro run --env {env} --pipelines {name}" and name in pipelines
        for out in [*stage.get("outs", []), *stage.get("metrics", [])]:
            out = out if isinstance(out, str) else next(iter(out))
            assert out in paths or out in {f"{variables['data_root']}/06_models/students",
                                           f"{variables['data_root']}/07_model_output/histories"}, out
            assert out.startswith(variables["data_root"] + "/"), out
        for entry in stage.get("params", []):
            for path, keys in entry.items():
                parameters = yaml.safe_load((ROOT / path).read_text())
                for key in keys:  # a dotted key names a nested parameter (`study.seeds`)
                    node = parameters
                    for part in key.split("."):
                        assert isinstance(node, dict) and part in node, (path, key)
                        node = node[part]


def test_every_stage_depends_on_the_code_it_imports_and_the_data_it_reads(pipelines):
    """A new import or a new catalog input of a stage's pipeline fails here until dvc.yaml declares it."""
    stages, _ = _stages()
    catalog = _catalog_paths("local")
    outs = {name: {o if isinstance(o, str) else next(iter(o)) for o in stage.get("outs", [])}
            for name, stage in stages.items()}
    for name, stage in stages.items():
        deps = stage["deps"]
        assert {"conf/base", "conf/${kedro_env}".replace("${kedro_env}", "local")} <= set(deps), name
        modules = subprocess.run(
            [sys.executable, "-c", f"import sys, sstkd.pipelines.{name}; print('\\n'.join("
             "m.__file__ for m in list(sys.modules.values()) if m.__name__.startswith('sstkd') and "
             "getattr(m, '__file__', None)))"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
        for module in modules:
            relative = Path(module).resolve().relative_to((ROOT / "src").resolve().parent).as_posix()
            assert _covered(relative, deps), f"stage {name}: {relative} is imported but not in its deps"
        for dataset in pipelines[name].inputs():
            path = catalog.get(dataset) or catalog.get("{method}." + dataset.split(".", 1)[-1])
            if dataset.startswith("params:") or path is None or any(path in o for o in outs[name]):
                continue
            if dataset == "raw_dataset" and name == "synthetic":
                continue
            assert _covered(path, deps), f"stage {name} reads {dataset} ({path}) but does not depend on it"


def test_dvc_understands_the_stages():
    dvc = Path(sys.executable).with_name("dvc")
    result = subprocess.run([str(dvc), "dag"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "distillation" in result.stdout


def test_default_pipeline_chains_every_stage(pipelines):
    default = pipelines["__default__"]
    names = {node.name for node in default.nodes}
    assert {"generate_texture_mosaics", "build_validated_manifest", "train_teacher", "sstkd.seed_0.train_student",
            "evaluate_models", "build_report"} <= names
    assert default.outputs() >= {"report_table", "metrics"} or "metrics" in default.all_outputs()


@pytest.mark.parametrize("env", ["base", "tiny"])
def test_every_configured_method_is_defined(env):
    methods = configured_methods(ROOT / "conf", env=env if env != "base" else "local")
    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env=env,
                               merge_strategy={"parameters": "soft"})
    assert set(methods) <= set(loader["parameters"]["distillation"]["methods"])
