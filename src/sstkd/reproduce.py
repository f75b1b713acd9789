"""``sstkd repro``: ``dvc repro`` as one study in MLflow.

DVC runs each stale stage as its own ``kedro run``, and each opens its own MLflow run: six unrelated runs per
study. Here a parent run is opened first and its id handed to the stages (``SSTKD_PARENT_RUN_ID``); the project
hook makes each stage's run its child. When DVC finds nothing stale the parent is deleted (nothing ran); it ends
FAILED when ``dvc repro`` fails, and carries the ``dvc.lock`` hashes it ended with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

PARENT_RUN_VARIABLE = "SSTKD_PARENT_RUN_ID"


def _experiment_settings(project: Path) -> tuple[str, dict]:
    """The experiment kedro-mlflow uses (conf/base/mlflow.yml), so the parent lands beside its children."""
    config = project / "conf" / "base" / "mlflow.yml"
    experiment = ((yaml.safe_load(config.read_text()) or {}).get("tracking") or {}).get("experiment") or {} \
        if config.exists() else {}
    return experiment.get("name", "sstkd"), experiment.get("create_experiment_kwargs") or {}


def _dvc() -> str:
    beside = Path(sys.executable).with_name("dvc")  # the venv's dvc, as `make repro` uses
    return str(beside) if beside.exists() else (shutil.which("dvc") or "dvc")


def reproduce(dvc_arguments: list[str], tracking_uri: str, project: Path = Path(".")) -> int:
    """Run ``dvc repro *dvc_arguments`` under one parent MLflow run; return DVC's exit status."""
    from mlflow import MlflowClient

    from sstkd import tracking

    project = project.resolve()
    client = MlflowClient(tracking_uri=tracking_uri)
    name, create_kwargs = _experiment_settings(project)
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name, **create_kwargs)
    command = " ".join(["dvc", "repro", *dvc_arguments])
    parent = client.create_run(experiment_id, run_name="dvc repro", tags={
        "sstkd.role": "study", "sstkd.command": command, **tracking.git_state(project),
        **tracking.process_tags(project)}).info.run_id
    # The stages' runs find the store through their own config; the path makes the venv's kedro the one DVC runs.
    environment = os.environ | {PARENT_RUN_VARIABLE: parent,
                                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        status = subprocess.call([_dvc(), "repro", *dvc_arguments], cwd=project, env=environment)
    except KeyboardInterrupt:
        status = 130
    children = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
                                  max_results=1)
    if not children and status == 0:
        client.delete_run(parent)
        print(f"sstkd repro: no stage ran, so no MLflow run was kept ({command})")
        return 0
    for key, value in tracking.dvc_hashes(project).items():
        client.set_tag(parent, key, value)
    client.set_terminated(parent, status="FINISHED" if status == 0 else "FAILED")
    print(f"sstkd repro: the stages' MLflow runs are children of run {parent}")
    return status
