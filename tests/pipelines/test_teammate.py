"""The teammate's path (issue 11): a study run and recorded with DVC is pushed, cloned, pulled, found up to date
by `dvc repro`, evaluated and audited in a clone that has none of the original MLflow store."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .cli import ROOT, SSTKD, copy_project, output, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # whole studies through DVC: run by `make test-all` (CI)

BIN = Path(sys.executable).parent
DVC = BIN / "dvc"
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


def _dvc(project: Path, *args: str) -> str:
    environment = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg"}
    return output(run(project, *args, command=DVC, env=environment))


def _git(project: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=project, check=True, capture_output=True, text=True).stdout


def _tiny_dvc_project(path: Path) -> Path:
    """A copy of the project with its DVC setup, whose dvc.yaml reproduces the seconds-long tiny study."""
    project = copy_project(path)
    for item in (".gitignore", ".dvcignore", ".dvc/config", ".dvc/.gitignore"):
        (project / item).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / item, project / item)
    dvc_yaml = project / "dvc.yaml"  # it reproduces the env its `vars` file names
    dvc_yaml.write_text(dvc_yaml.read_text().replace("  - conf/base/globals.yml", "  - conf/tiny/globals.yml"))
    return project


def test_sstkd_repro_nests_the_stages_runs_under_one_study_run(tmp_path):
    from mlflow import MlflowClient

    project = _tiny_dvc_project(tmp_path / "project")
    text = output(run(project, "repro", "synthetic", command=SSTKD))  # one stale stage (each costs a Kedro start)
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("sstkd").experiment_id])
    parents = [r for r in runs if r.info.run_name == "dvc repro"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0].info.run_id
    assert f"children of run {parent}" in text
    stages = sorted(r.data.tags["kedro.pipeline"] for r in runs if r.data.tags.get("mlflow.parentRunId") == parent)
    assert stages == ["synthetic"], stages
    assert parents[0].data.tags["sstkd.command"] == "dvc repro synthetic"
    assert "dvc.data/tiny/01_raw/texture_mosaics" in parents[0].data.tags  # the dvc.lock it ended with

    # nothing stale (and from a subfolder: the project is found above it): no new run is kept
    text = output(run(project / "conf", "repro", "synthetic", command=SSTKD))
    assert "no stage's run joined the study run, so it was not kept" in text
    assert len(client.search_runs([parents[0].info.experiment_id])) == len(runs)


def test_a_pulled_study_is_up_to_date_evaluates_and_audits_without_the_original_store(tmp_path):
    origin = _tiny_dvc_project(tmp_path / "origin")
    _dvc(origin, "remote", "modify", "local", "url", str(tmp_path / "remote"))
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "study on tiny")
    study_commit = _git(origin, "rev-parse", "HEAD").strip()

    run(origin, "run", "--env", "tiny")  # `make run`: one process; then `dvc commit` records what it produced
    _dvc(origin, "commit", "--force")
    assert "Data and pipelines are up to date" in _dvc(origin, "status")
    _git(origin, "add", "-A")
    tracked = _git(origin, "diff", "--cached", "--name-only").split()
    assert {"dvc.lock", "data/tiny/08_reporting/metrics.json"} <= set(tracked), tracked
    _git(origin, "commit", "-qm", "results")
    _dvc(origin, "push")

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    assert not (clone / "mlflow.db").exists()
    _dvc(clone, "pull")
    assert "Data and pipelines are up to date" in _dvc(clone, "status")
    assert "didn't change, skipping" in _dvc(clone, "repro", "--dry")
    metrics = json.loads((clone / "data/tiny/08_reporting/metrics.json").read_text())
    assert set(metrics) == {"teacher", "baseline", "pixel_kd", "sstkd"}
    assert "sstkd" in _dvc(clone, "metrics", "show")

    run(clone, "run", "--env", "tiny", "--pipelines", "evaluation")  # logs into the clone's own store
    info = json.loads((clone / "data/tiny/02_intermediate/dataset_info.json").read_text())
    assert info["root"] == "data/tiny/01_raw/texture_mosaics"
    lineage = output(run(clone, "lineage", "--model", "data/tiny/06_models/students/sstkd/seed_0.pt", command=SSTKD))
    assert f"git_commit {study_commit}" in lineage
    assert f"data_fingerprint {info['fingerprint']}" in lineage
    assert "losses.structural.levels = 3" in lineage and "kedro_env tiny" in lineage
    teacher = json.loads(json.dumps(_teacher_record(clone)))
    assert teacher["mlflow_run_id"] and f"mlflow_run_id {teacher['mlflow_run_id']}" in lineage
    assert "is not in this store" in lineage


def _teacher_record(project: Path) -> dict:
    from sstkd.training.checkpoint import load_checkpoint

    return load_checkpoint(project / "data/tiny/06_models/students/sstkd/seed_0.pt")["lineage"]["teacher"]
