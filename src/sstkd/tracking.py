"""MLflow helpers used by the pipeline nodes. Nothing here needs Kedro; with no active MLflow run every helper
does nothing, so the library also runs without tracking."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import torch
import yaml

import sstkd

log = logging.getLogger(__name__)


def git_state(root: str | Path = ".") -> dict[str, str]:
    """``{"git.commit": sha, "git.dirty": "true"|"false"}`` (``unknown`` outside a git checkout)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip() != ""
        return {"git.commit": commit, "git.dirty": str(dirty).lower()}
    except (OSError, subprocess.CalledProcessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}


def dvc_hashes(root: str | Path = ".") -> dict[str, str]:
    """The md5 DVC recorded in ``dvc.lock`` for each stage output (``dvc.<path>`` → hash)."""
    lock = Path(root) / "dvc.lock"
    if not lock.exists():
        return {}
    hashes = {}
    for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            if "md5" in out:
                hashes[f"dvc.{out['path']}"] = out["md5"]
    return hashes


def process_tags(project: Path) -> dict[str, str]:
    """Who owns a run: host, process and project folder (so a later start can tell a dead run from a live one)."""
    return {"sstkd.host": socket.gethostname(), "sstkd.pid": str(os.getpid()), "sstkd.project": str(project)}


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_abandoned_runs(project: Path) -> list[str]:
    """Mark FAILED the RUNNING runs of this project (same host and folder) whose process is gone; their ids.

    Runs of other clones, other users of a shared store, or live processes are never touched.
    """
    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    mine = (f"attributes.status = 'RUNNING' and tags.`sstkd.project` = '{project}' "
            f"and tags.`sstkd.host` = '{socket.gethostname()}'")
    stale = [run for run in client.search_runs(experiments, filter_string=mine, max_results=1000)
             if not _alive(int(run.data.tags.get("sstkd.pid") or 0))]
    for run in stale:
        client.set_tag(run.info.run_id, "sstkd.failure", "the process ended without closing this run (killed?)")
        client.set_terminated(run.info.run_id, status="FAILED")
    return [run.info.run_id for run in stale]


def active() -> bool:
    return mlflow.active_run() is not None


def set_tags(tags: dict[str, str]) -> None:
    if active():
        mlflow.set_tags({k: str(v) for k, v in tags.items()})


@contextmanager
def nested_run(name: str, tags: dict[str, str] | None = None):
    """A nested MLflow run under the pipeline's run (yields its id, or ``None`` without tracking)."""
    if not active():
        yield None
        return
    parent = mlflow.get_run(mlflow.active_run().info.run_id).data.tags
    owner = {k: v for k, v in parent.items() if k in ("sstkd.host", "sstkd.pid", "sstkd.project")}
    with mlflow.start_run(run_name=name, nested=True) as run:
        mlflow.set_tags({"mlflow.runName": name, **owner, **{k: str(v) for k, v in (tags or {}).items()}})
        yield run.info.run_id


def log_params(params: dict, prefix: str = "") -> None:
    if not active():
        return
    flat = {}

    def walk(value, key):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        else:
            flat[key] = json.dumps(value) if isinstance(value, list | tuple) else value

    walk(params, prefix)
    mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()})


def log_metrics(metrics: dict, prefix: str = "", step: int | None = None, run_id: str | None = None) -> None:
    """Log the numeric, non-NaN entries of ``metrics`` to the active run, or to ``run_id`` when given."""
    numbers = {f"{prefix}{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float) and v == v}
    if run_id:
        client = mlflow.MlflowClient()
        for key, value in numbers.items():
            client.log_metric(run_id, key, value, step=step or 0)
    elif active():
        mlflow.log_metrics(numbers, step=step)


def epoch_logger(prefix: str = ""):
    """A training callback that logs each epoch's numbers as MLflow metrics (step = epoch)."""
    def callback(epoch: int, record: dict) -> None:
        log_metrics({k: v for k, v in record.items() if k != "epoch"}, prefix, step=epoch)
    return callback


class LogitsOnly(torch.nn.Module):
    """The served form of a network: images ``(B, 3, H, W)`` → class scores ``(B, K, H, W)``."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images).logits


def log_torch_model(model: torch.nn.Module, example_input: np.ndarray, name: str = "model") -> None:
    """Log ``model`` with ``mlflow.pytorch``, with a signature inferred from ``example_input``.

    Requirements are given, not inferred, and torch.export is skipped: inference of both took ~15 s per model.
    """
    if not active():
        return
    import mlflow.pytorch
    from mlflow.models import infer_signature

    wrapped = LogitsOnly(model.cpu().eval())
    with torch.no_grad():
        output = wrapped(torch.from_numpy(example_input)).numpy()
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"sstkd=={sstkd.__version__}"]
    mlflow.pytorch.log_model(wrapped, name=name, signature=infer_signature(example_input, output),
                             input_example=example_input, pip_requirements=requirements, export_model=False)
