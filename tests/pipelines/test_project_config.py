"""The project's configuration is consistent: DVC stages, Kedro pipelines, catalog and parameters agree."""

import ast
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


def _module_file(name: str) -> Path | None:
    base = ROOT / "src" / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _sstkd_imports(module: str) -> set[Path]:
    """The files of every sstkd module ``module`` imports, directly or not, at the top or inside a function.

    Read from the source (every ``import`` statement, including lazy ones that run only on some paths), so it is
    a superset of what one run happens to import, and needs no interpreter start per stage.
    """
    seen: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        parts = name.split(".")
        for index in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__
            pending.append(".".join(parts[:index]))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                pending += [alias.name for alias in node.names if alias.name.split(".")[0] == "sstkd"]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] == "sstkd":
                    pending.append(source)
                    pending += [f"{source}.{alias.name}" for alias in node.names]  # `from pkg import module`
    return seen


def test_the_import_reader_finds_lazy_and_relative_imports():
    files = {path.relative_to(ROOT / "src").as_posix() for path in _sstkd_imports("sstkd.pipelines.teacher")}
    assert {"sstkd/__init__.py", "sstkd/pipelines/__init__.py", "sstkd/pipelines/teacher/__init__.py",
            "sstkd/pipelines/teacher/pipeline.py", "sstkd/pipelines/teacher/nodes.py", "sstkd/config.py",
            "sstkd/pipelines/common.py", "sstkd/training/loop.py"} <= files
    # imported only inside functions: tracking.log_segmentation_model -> serving -> SegmentationModel.predict
    assert {"sstkd/serving.py", "sstkd/evaluation/evaluate.py"} <= files
    assert "sstkd/pipelines/evaluation/nodes.py" not in files


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
        for module in _sstkd_imports(f"sstkd.pipelines.{name}"):
            relative = module.relative_to(ROOT).as_posix()
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


def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split(";")[0].strip().split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_the_development_extras_install_beside_the_locked_environment():
    """`make dev` installs requirements-dev.lock into the project's venv: it must not move any locked package."""
    main, dev = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-dev.lock")
    moved = {name: (main[name], dev[name]) for name in main.keys() & dev.keys() if main[name] != dev[name]}
    assert moved == {}
    assert {"jupyterlab", "kedro-viz", "kedro", "pandas"} <= dev.keys()
    wanted = {line.split("==")[0]: line.split("==")[1] for line in (ROOT / "requirements-dev.in").read_text().split()
              if "==" in line}
    assert all(dev[name] == version for name, version in wanted.items()), wanted
    for lock in ("requirements.lock", "requirements-dev.lock"):
        assert "://" not in (ROOT / lock).read_text()  # no registry host in any file
