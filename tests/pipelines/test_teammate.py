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

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
DVC = BIN / "dvc"
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


def _dvc(project: Path, *args: str) -> str:
    environment = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg"}
    return output(run(project, *args, command=DVC, env=environment))


def _git(project: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=project, check=True, capture_output=True, text=True).stdout


def test_a_pulled_study_is_up_to_date_evaluates_and_audits_without_the_original_store(tmp_path):
    origin = copy_project(tmp_path / "origin")
    for item in (".gitignore", ".dvcignore", ".dvc/config", ".dvc/.gitignore"):
        (origin / item).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / item, origin / item)
    # dvc.yaml reproduces the env its `vars` file names: the seconds-long tiny study here
    dvc_yaml = origin / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("  - conf/base/globals.yml", "  - conf/tiny/globals.yml"))
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
