"""End-to-end runs of the real `kedro run` CLI on conf/tiny, in a throw-away copy of the project."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
KEDRO = Path(sys.executable).with_name("kedro")
SSTKD = Path(sys.executable).with_name("sstkd")
pytestmark = pytest.mark.slow


def _run(project: Path, *args: str, check: bool = True, command: Path = KEDRO) -> subprocess.CompletedProcess:
    env = dict(os.environ, DO_NOT_TRACK="1", MPLBACKEND="Agg", COLUMNS="200")
    result = subprocess.run([str(command), *args], cwd=project, capture_output=True, text=True, env=env,
                            timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{command.name} {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project (a git repository, as users have it) after a full `kedro run --env tiny`."""
    path = tmp_path_factory.mktemp("project")
    for item in ("conf", "src", "pyproject.toml", ".telemetry", "dvc.yaml"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, path / item, ignore=shutil.ignore_patterns("__pycache__", "local"))
        elif source.exists():
            shutil.copy(source, path / item)
    (path / "conf" / "local").mkdir(exist_ok=True)
    for layer in ("01_raw", "02_intermediate", "05_model_input", "06_models", "07_model_output", "08_reporting"):
        (path / "data" / layer).mkdir(parents=True)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-qm", "snapshot"], cwd=path, check=True)
    _run(path, "run", "--env", "tiny")
    return path


def test_the_default_pipeline_produces_the_report(project):
    report = pd.read_csv(project / "data/08_reporting/report.csv")
    assert list(report["model"]) == ["teacher", "baseline", "pixel_kd", "sstkd"]
    assert report["miou"].between(0, 100).all() and report["boundary_fscore"].between(0, 100).all()
    assert report.loc[report.model == "baseline", "delta_miou"].item() == 0
    assert (report["params_millions"] > 0).all() and (report["gflops"] > 0).all()
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    assert set(metrics) == {"teacher", "baseline", "pixel_kd", "sstkd"}
    for figure in ("miou_per_model", "per_class_iou", "qualitative", "texture_modules", "class_frequencies"):
        assert (project / f"data/08_reporting/{figure}.png").stat().st_size > 5000
    markdown = (project / "data/08_reporting/report.md").read_text()
    assert "| sstkd | student |" in markdown and "Per-class IoU" in markdown


def test_the_report_holds_the_texture_transfer_table_figure_and_metrics(project):
    table = pd.read_csv(project / "data/08_reporting/texture_transfer.csv")
    assert list(table["model"]) == ["teacher", "baseline", "pixel_kd", "sstkd"]
    teacher = table[table.model == "teacher"].iloc[0]
    assert teacher["profile_l1"] == 0 and teacher["intensity_l1"] == 0 and teacher["cka"] == pytest.approx(1.0)
    students = table[table.model != "teacher"]
    assert students["profile_l1"].between(0, 2).all() and (students["profile_l1"] > 0).all()
    assert students["intensity_l1"].between(0, 1).all() and students["cka"].between(0, 1).all()
    assert table["probe_accuracy"].between(0, 100).all()
    assert {"intensity_l1_n8", "histogram_w1_n32"} <= set(table.columns)
    assert (project / "data/08_reporting/texture_transfer.png").stat().st_size > 5000
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    assert metrics["teacher"]["texture_cka"] == pytest.approx(1.0)
    assert 0 <= metrics["sstkd"]["texture_probe_accuracy"] <= 100
    assert "## Texture transfer" in (project / "data/08_reporting/report.md").read_text()
    manifest = pd.read_csv(project / "data/02_intermediate/manifest.csv")
    assert manifest.groupby("split").size().to_dict() == {"test": 8, "train": 16, "val": 8}


def test_mlflow_records_one_run_with_nested_model_runs_and_lineage(project):
    with sqlite3.connect(project / "mlflow.db") as db:
        runs = dict(db.execute("select run_uuid, name from runs").fetchall())
        tags = db.execute("select run_uuid, key, value from tags").fetchall()
        params = db.execute("select count(*) from params").fetchone()[0]
    by_run = {}
    for run, key, value in tags:
        by_run.setdefault(run, {})[key] = value
    names = sorted(runs.values())
    assert names.count("teacher") == 1 and {"baseline", "pixel_kd", "sstkd"} <= set(names)
    teacher_id = next(r for r, n in runs.items() if n == "teacher")
    sstkd_id = next(r for r, n in runs.items() if n == "sstkd")
    assert by_run[sstkd_id]["sstkd.teacher_run_id"] == teacher_id
    assert "mlflow.parentRunId" in by_run[sstkd_id]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    assert by_run[sstkd_id]["git.commit"] == commit
    parent = by_run[sstkd_id]["mlflow.parentRunId"]
    assert by_run[parent]["kedro.env"] == "tiny" and len(by_run[parent]["data.fingerprint"]) == 40
    assert params > 50  # flattened Kedro parameters + per-model parameters
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    artifacts = {a.path for a in client.list_artifacts(parent)}  # the report, logged by MlflowArtifactDataset
    assert {"report.md", "report.csv", "metrics.json", "texture_modules.png", "texture_transfer.csv",
            "texture_transfer.png"} <= artifacts, artifacts
    sstkd_metrics = client.get_run(sstkd_id).data.metrics  # the diagnostics reach each model's own run
    assert {"texture_cka", "texture_probe_accuracy", "texture_profile_l1"} <= set(sstkd_metrics), sstkd_metrics


def test_lineage_cli_traces_a_model_file_to_data_code_params_and_teacher(project):
    out = _run(project, "lineage", "--model", "data/06_models/students/sstkd.pt", command=SSTKD).stdout
    assert "git.commit" in out and "data.fingerprint" in out and "losses.structural.levels = 3" in out
    assert "teacher:" in out and "test_miou" in out
    listing = _run(project, "runs", command=SSTKD).stdout
    assert "sstkd" in listing and "teacher" in listing


def test_one_stage_reruns_alone(project):
    before = (project / "data/06_models/teacher.pt").stat().st_mtime_ns
    _run(project, "run", "--env", "tiny", "--pipeline", "evaluation")
    _run(project, "run", "--env", "tiny", "--pipeline", "distillation", "--namespaces", "baseline")
    assert (project / "data/06_models/teacher.pt").stat().st_mtime_ns == before


def test_a_node_trains_data_parallel_with_two_processes(project):
    model = project / "data/06_models/students/baseline.pt"
    before = model.read_bytes()
    _run(project, "run", "--env", "tiny", "--pipeline", "distillation", "--namespaces", "baseline",
         "--params", "training.nproc=2,training.seed=7")
    history = json.loads((project / "data/07_model_output/baseline_history.json").read_text())
    assert len(history) == 1 and 0 <= history[0]["val_miou"] <= 1
    assert model.read_bytes() != before  # retrained (another seed), by the DDP workers, written by the node


def test_a_corrupt_image_fails_ingestion_naming_it_and_keeps_the_manifest(project, tmp_path):
    manifest = project / "data/02_intermediate/manifest.csv"
    before = manifest.read_bytes()
    raw = project / "data/01_raw/texture_mosaics_tiny/images"
    victim = sorted(raw.glob("*.png"))[0]
    original = victim.read_bytes()
    try:
        victim.write_bytes(original[:100])
        result = _run(project, "run", "--env", "tiny", "--pipeline", "ingestion", check=False)
        assert result.returncode != 0
        assert f"{victim.name}: unreadable or corrupt image" in result.stdout + result.stderr
        assert manifest.read_bytes() == before
    finally:
        victim.write_bytes(original)


@pytest.mark.parametrize("override, message", [
    ("teacher.training.epochs=many", "teacher.training.epochs: Input should be a valid integer"),
    ("teacher.network.backbon=resnet18", "teacher.network.backbon: Extra inputs are not permitted"),
])
def test_a_wrong_parameter_fails_early_naming_the_key(project, override, message):
    result = _run(project, "run", "--env", "tiny", "--pipeline", "teacher", "--params", override, check=False)
    assert result.returncode != 0
    assert message in " ".join((result.stdout + result.stderr).split())


@pytest.mark.parametrize("notebook", ["lineage.ipynb", "texture_modules.ipynb"])
def test_notebooks_run_on_a_real_study(project, notebook, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    monkeypatch.chdir(project)
    namespace: dict = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{notebook}", "exec"), namespace)  # noqa: S102
    if notebook == "lineage.ipynb":
        assert set(namespace["table"]["model"]) >= {"teacher", "baseline", "sstkd"}
        assert namespace["lineage"]["teacher"]["run_id"]


def test_data_stages_through_the_kedro_session_api(tmp_path, monkeypatch):
    """synthetic -> ingestion -> preprocessing in-process, as a notebook or another tool would run them."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    for item in ("conf", "src", "pyproject.toml", ".telemetry"):
        if (ROOT / item).is_dir():
            shutil.copytree(ROOT / item, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / item, tmp_path / item)
    monkeypatch.setenv("KEDRO_ENV", "tiny")
    monkeypatch.chdir(tmp_path)
    bootstrap_project(tmp_path)
    with KedroSession.create(project_path=tmp_path, env="tiny") as session:
        session.run(pipeline_names=["data"])
    statistics = json.loads((tmp_path / "data/08_reporting/dataset_statistics.json").read_text())
    assert statistics["num_images"] == 16 and sum(statistics["class_pixel_counts"]) == 16 * 64 * 64
    info = json.loads((tmp_path / "data/02_intermediate/dataset_info.json").read_text())
    assert info["hflip_safe"] is False and info["samples"] == {"test": 8, "train": 16, "val": 8}
