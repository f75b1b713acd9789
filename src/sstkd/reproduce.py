"""``sstkd repro``: ``dvc repro`` as one study in MLflow.

DVC runs each stale stage as its own ``kedro run``, and each opens its own MLflow run: six unrelated runs per
study. Here a parent run is opened first and its id handed to the stages (``SSTKD_PARENT_RUN_ID``); the project
hook makes each stage's run its child. When no stage's run joins it (nothing was stale) the parent is deleted;
it ends FAILED when ``dvc repro`` fails or is interrupted, and carries the ``dvc.lock`` hashes it ended with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from sstkd.store import default_tracking_uri

PARENT_RUN_VARIABLE = "SSTKD_PARENT_RUN_ID"


class ReproError(SystemExit):
    pass


def project_root(start: Path) -> Path:
    """The folder holding ``dvc.yaml`` and ``conf/``, from ``start`` upwards (DVC's stages run there)."""
    for folder in (start, *start.parents):
        if (folder / "dvc.yaml").is_file() and (folder / "conf").is_dir():
            return folder
    raise ReproError(f"sstkd repro: no project (dvc.yaml and conf/) in {start} or above it")


def tracking_uri(project: Path) -> str:
    """The store the stages log to (``sstkd``'s default store), a relative sqlite path taken from the project."""
    uri = default_tracking_uri(project)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{project / uri[len('sqlite:///'):]}"
    return uri


def _experiment_settings(project: Path) -> tuple[str, dict]:
    """The experiment kedro-mlflow uses (conf/base/mlflow.yml), so the parent lands beside its children."""
    config = project / "conf" / "base" / "mlflow.yml"
    tracking = (yaml.safe_load(config.read_text()) or {}).get("tracking") or {} if config.exists() else {}
    experiment = tracking.get("experiment") or {}
    return experiment.get("name", "sstkd"), experiment.get("create_experiment_kwargs") or {}


def _dvc() -> str:
    beside = Path(sys.executable).with_name("dvc")  # the venv's dvc, as `make repro` uses
    found = str(beside) if beside.exists() else shutil.which("dvc")
    if not found:
        raise ReproError("sstkd repro: no `dvc` command (run `make setup`, or put DVC on PATH)")
    return found


def _run_dvc(command: list[str], project: Path, environment: dict) -> int:
    """DVC's exit status; on Ctrl-C, DVC gets the interrupt too and is waited for, so it cleans up."""
    process = subprocess.Popen(command, cwd=project, env=environment)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.wait()
        return 130


def reproduce(dvc_arguments: list[str], start: Path = Path(".")) -> int:
    """Run ``dvc repro *dvc_arguments`` under one parent MLflow run; return DVC's exit status."""
    from mlflow import MlflowClient

    from sstkd import tracking

    project = project_root(start.resolve())
    dvc = _dvc()
    client = MlflowClient(tracking_uri=tracking_uri(project))
    name, create_kwargs = _experiment_settings(project)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None and experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)  # as kedro-mlflow does (restore_if_deleted)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name, **create_kwargs)
    command = " ".join(["dvc", "repro", *dvc_arguments])
    parent = client.create_run(experiment_id, run_name="dvc repro", tags={
        "sstkd.role": "study", "sstkd.command": command, **tracking.git_state(project),
        **tracking.process_tags(project)}).info.run_id
    # The venv's bin first on PATH: the stages' `kedro` is this environment's, as with `make repro`.
    environment = os.environ | {PARENT_RUN_VARIABLE: parent,
                                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    status = 1
    try:
        status = _run_dvc([dvc, "repro", *dvc_arguments], project, environment)
    finally:
        children = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
                                      max_results=1)
        if not children and status == 0:
            client.delete_run(parent)
            print(f"sstkd repro: no stage's run joined the study run, so it was not kept ({command}: nothing "
                  "was stale)")
        else:
            for key, value in tracking.dvc_hashes(project).items():
                client.set_tag(parent, key, value)
            client.set_terminated(parent, status="FINISHED" if status == 0 else "FAILED")
            print(f"sstkd repro: the stages' MLflow runs are children of run {parent}")
    return status
