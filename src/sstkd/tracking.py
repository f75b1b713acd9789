"""MLflow helpers used by the pipeline nodes. Nothing here needs Kedro; with no active MLflow run every helper
does nothing, so the library also runs without tracking."""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import warnings
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


def compute_facts(nproc: int = 1) -> dict[str, str]:
    """What decides a training run's float results beyond code, data and parameters: torch and its CPU kernel
    ISA (``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512...), the CPU model, the intra-op thread count
    (per data-parallel worker), and CUDA / cuDNN / the GPU on a GPU. Two runs with the same facts give the same
    numbers to the last digit; another ISA or thread count changes the order of float sums, and so the digits."""
    threads = torch.get_num_threads() if nproc <= 1 else max(1, (os.cpu_count() or 1) // nproc)
    facts = {"torch": str(torch.__version__), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
             "cpu_model": _cpu_model(), "threads": str(threads), "processes": str(nproc)}
    if torch.cuda.is_available():
        facts |= {"cuda": str(torch.version.cuda), "cudnn": str(torch.backends.cudnn.version()),
                  "gpu": torch.cuda.get_device_name(0)}
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


_run_context: dict[str, str] = {}


def set_run_context(**tags: str) -> None:
    """Facts about the running session that the library cannot know (e.g. ``kedro.env``), set by the project hook."""
    _run_context.update(tags)


def run_context() -> dict[str, str]:
    return dict(_run_context)


def run_exists(run_id: str | None, client: mlflow.MlflowClient | None = None) -> bool:
    """Whether ``run_id`` is a run of the current tracking store (a pulled model's run may be in another one)."""
    if not run_id:
        return False
    from mlflow.exceptions import MlflowException

    try:
        (client or mlflow.MlflowClient()).get_run(run_id)
        return True
    except MlflowException:
        return False


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


def flat_keys(values: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= flat_keys(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def log_data_input(dataset_info: dict, context: str = "training") -> None:
    """Record the run's data as an MLflow dataset input (name: the layout, digest: the data fingerprint)."""
    if not active():
        return
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # a local path matches two equivalent local source types: either is right
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
        source = resolve_dataset_source(str(dataset_info.get("root", ".")))
    dataset = MetaDataset(source=source,
                          name=str(dataset_info.get("layout", "data")),
                          digest=str(dataset_info.get("fingerprint", ""))[:16])
    mlflow.log_input(dataset, context=context)


def log_params(params: dict, prefix: str = "") -> None:
    if not active():
        return
    flat = flat_keys(params, f"{prefix}." if prefix else "")
    mlflow.log_params({k: str(json.dumps(v) if isinstance(v, list | tuple) else v)[:6000] for k, v in flat.items()})


def log_metrics(metrics: dict, prefix: str = "", step: int | None = None, run_id: str | None = None) -> None:
    """Log the numeric, non-NaN entries of ``metrics`` to the active run, or to ``run_id`` when given."""
    numbers = {f"{prefix}{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float) and v == v}
    if run_id:
        client = mlflow.MlflowClient()
        for key, value in numbers.items():
            client.log_metric(run_id, key, value, step=step or 0)
    elif active():
        mlflow.log_metrics(numbers, step=step)


PERCENT_METRICS = ("val_miou", "val_pixel_accuracy", "best_val_miou")  # fractions in the library, % in MLflow


def in_percent(metrics: dict) -> dict:
    """``metrics`` with the accuracy-like fractions of :data:`PERCENT_METRICS` in percent, the report's unit."""
    return {k: 100 * v if k in PERCENT_METRICS and isinstance(v, int | float) else v for k, v in metrics.items()}


def epoch_logger(prefix: str = ""):
    """A training callback that logs each epoch's numbers as MLflow metrics (step = epoch), mIoU in percent."""
    def callback(epoch: int, record: dict) -> None:
        log_metrics(in_percent({k: v for k, v in record.items() if k != "epoch"}), prefix, step=epoch)
    return callback


def log_segmentation_model(network: torch.nn.Module, payload: dict, registered_name: str | None = None) -> None:
    """Log ``network`` as a pyfunc model (:class:`sstkd.serving.SegmentationModel`) that takes uint8 images of any
    batch and size, registered as ``registered_name`` (e.g. ``sstkd-generic-sstkd``).

    Requirements are given, not inferred (inference took ~15 s per model); the sstkd code ships with the model.
    """
    if not active():
        return
    import tempfile

    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from sstkd import serving
    from sstkd.training.checkpoint import atomic_save

    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]),
                               outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1))]))
    served = {key: payload[key] for key in ("name", "network", "num_classes", "class_names", "normalization")}
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        # the signature is explicit (dynamic shape): MLflow's request for an input example does not apply
        warnings.filterwarnings("ignore", message=r".*An input example was not provided")
        weights = Path(folder) / "model.pt"
        atomic_save(served | {"state_dict": network.state_dict()}, weights)
        mlflow.pyfunc.log_model(
            name="model", python_model=serving.model_code_file(), artifacts={"model": str(weights)},
            code_paths=[serving.sstkd_code_path()], pip_requirements=serving.requirements(), signature=signature,
            registered_model_name=registered_name,
            metadata={"class_names": list(payload["class_names"]), "normalization": payload["normalization"],
                      "input": "uint8 RGB images (N, H, W, 3), any N, H, W", "output": "label maps (N, H, W)",
                      "fingerprint": payload.get("fingerprint"), "sstkd_version": sstkd.__version__})
