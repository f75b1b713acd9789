"""Glue shared by the teacher and distillation pipelines: train one network inside its own MLflow run, and give
the model file the lineage record that travels with it (DVC versions the file; no MLflow store is needed to
audit it)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
from pathlib import Path

import torch

from sstkd import tracking
from sstkd.atomic import write_bytes_atomically
from sstkd.config import PRETRAINED
from sstkd.errors import UserError
from sstkd.models.segmenter import NetworkConfig
from sstkd.training.checkpoint import load_checkpoint
from sstkd.training.launch import run_data_parallel, train_in_worker_process
from sstkd.training.loop import TrainingConfig
from sstkd.training.recipe import network_from_payload, train_network, training_fingerprint

log = logging.getLogger(__name__)

class MissingPretrainedWeightsError(UserError, ValueError):
    """A network asks for pretrained weights of a backbone the pretraining stage did not train."""


RECORD_FILE = "lineage.json"  # next to a model's last.pt: the record of the run that finished training it


def train_and_track(name: str, role: str, cache: dict, dataset_info: dict, statistics: dict,
                    network: NetworkConfig, losses: dict, training: TrainingConfig,
                    teacher_payload: dict | None = None, tags: dict[str, str] | None = None,
                    pretrained: dict | None = None) -> tuple[dict, list[dict]]:
    """Train ``name`` in a nested MLflow run (params, per-epoch metrics, the model) and return its payload.
    ``pretrained``: the lineage of the pretraining stage's weights the network starts from (in the model's lineage
    record, and its run as the tag ``sstkd.pretraining_run_id``).

    A model whose checkpoint already finished training with the same fingerprint is up to date: it is restored,
    keeps the record of the run that trained it, and nothing new is logged (no nested run, no model copy).
    """
    kwargs = dict(name=name, cache=cache, dataset_info=dataset_info, statistics=statistics,
                  network_config=network, losses=losses, training=training, teacher_payload=teacher_payload,
                  checkpoint_root=training.checkpoint_root)
    fingerprint = training_fingerprint(name, network, losses, training, dataset_info, teacher_payload, cache)
    record_path = Path(training.checkpoint_root) / name / RECORD_FILE if training.checkpoint_root else None
    finished = _finished_record(record_path, fingerprint)
    if finished is not None:
        payload, result = train_network(**kwargs)  # restores the finished checkpoint: no epoch runs
        log.info("%s is up to date (trained in run %s)", name, finished["mlflow_run_id"] or "without tracking")
        return payload | {"role": role, "mlflow_run_id": finished["mlflow_run_id"], "lineage": finished}, \
            result.history

    compute = tracking.compute_facts(training.nproc)
    tags = {"sstkd.role": role, "sstkd.model": name, "data.fingerprint": dataset_info.get("fingerprint", ""),
            **tracking.git_state(), **tracking.dvc_hashes(), **{f"compute.{k}": v for k, v in compute.items()},
            **(tags or {})}
    if pretrained is not None:
        tags["sstkd.pretraining_run_id"] = pretrained.get("mlflow_run_id") or ""
    if teacher_payload is not None:
        tags["sstkd.teacher_run_id"] = teacher_payload.get("mlflow_run_id", "")
        tags["sstkd.teacher_fingerprint"] = teacher_payload.get("fingerprint", "")
    with tracking.nested_run(name, tags) as run_id:
        tracking.log_params({"network": network.model_dump(), "losses": losses, "training": training.model_dump()})
        tracking.log_data_input(dataset_info)
        if training.nproc > 1 or training.nnodes != "1":
            results = run_data_parallel(training.nproc, kwargs, training.nnodes, training.rdzv_endpoint)
            payload, history = results[min(results)]
            unlogged = history  # the workers are separate processes, outside this MLflow run
        elif role == "student" and threading.current_thread() is not threading.main_thread():
            # A threaded runner: students side by side, each in a worker process (its own random state)
            processes = training.concurrent_students or os.cpu_count() or 1
            payload, result = train_in_worker_process(kwargs | {"training": training.model_copy(update={
                "progress": False})}, processes, threads=max(1, torch.get_num_threads() // processes))
            history = unlogged = result.history
        else:
            payload, result = train_network(**kwargs, callbacks=[tracking.epoch_logger()])
            history = result.history
            unlogged = history[: result.resumed_from_epoch or 0]  # epochs restored from a checkpoint
        log_epoch = tracking.epoch_logger()
        for record in unlogged:
            log_epoch(record["epoch"], record)
        payload["role"] = role
        payload["mlflow_run_id"] = run_id or ""
        payload["lineage"] = lineage_record(payload, network, losses, training, teacher_payload) | {
            "pretrained_backbone": pretrained, "compute": compute}
        tracking.log_metrics(tracking.in_percent({"best_val_miou": payload["best_val_miou"],
                                                  "best_epoch": payload["best_epoch"]}))
        if run_id:
            tracking.set_tags({"sstkd.fingerprint": payload["fingerprint"]})
            tracking.log_segmentation_model(network_from_payload(payload), payload,
                                            registered_name=f"sstkd-{dataset_info.get('layout')}-{name}")
    if record_path is not None:
        write_bytes_atomically(record_path, json.dumps(payload["lineage"], indent=1).encode())
    return payload, history


def with_pretrained_weights(network: NetworkConfig, pretrained_backbones: dict | None, where: str
                            ) -> tuple[NetworkConfig, dict | None]:
    """``network`` with ``backbone_weights: pretrained`` replaced by the pretraining stage's file for its backbone
    (whose name carries the weights' hash; the model's fingerprint holds their content), and the lineage of those
    weights (backbone, sha256, fingerprint, MLflow run, validation accuracy); others unchanged, with ``None``."""
    if network.backbone_weights != PRETRAINED:
        return network, None
    records = (pretrained_backbones or {}).get("backbones", {})
    if network.backbone not in records:
        raise MissingPretrainedWeightsError(
            f"{where}.backbone_weights: pretrained, but the pretraining stage has no {network.backbone} weights "
            f"(it has {sorted(records)})", None, f"add {network.backbone} to pretraining.backbones and run "
            "`kedro run --pipelines pretraining`")
    record = records[network.backbone]
    lineage = {key: record.get(key) for key in ("backbone", "file", "sha256", "fingerprint", "mlflow_run_id",
                                                "val_accuracy", "git_commit")}
    return network.model_copy(update={"backbone_weights": record["path"]}), lineage


def lineage_record(payload: dict, network: NetworkConfig, losses: dict, training: TrainingConfig,
                   teacher_payload: dict | None) -> dict:
    """What produced this model, stored in the model file itself: code, data, parameters, teacher, run."""
    git = tracking.git_state()
    teacher = None
    if teacher_payload is not None:
        earlier = teacher_payload.get("lineage") or {}
        teacher = {"name": teacher_payload.get("name"), "mlflow_run_id": teacher_payload.get("mlflow_run_id", ""),
                   "fingerprint": teacher_payload.get("fingerprint"), "git_commit": earlier.get("git_commit"),
                   "source": teacher_payload.get("source")}
    return {
        "model": payload["name"],
        "role": payload["role"],
        "fingerprint": payload["fingerprint"],
        "mlflow_run_id": payload["mlflow_run_id"],
        "git_commit": git["git.commit"],
        "git_dirty": git["git.dirty"],
        "kedro_env": tracking.run_context().get("kedro.env", ""),
        "data_fingerprint": payload.get("data_fingerprint"),
        "data_layout": payload.get("data_layout"),
        "parameters": json.loads(json.dumps({"network": network.model_dump(), "losses": losses,
                                             "training": training.model_dump()}, default=str)),
        "teacher": teacher,
        "best_val_miou": payload["best_val_miou"],
        "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _finished_record(record_path: Path | None, fingerprint: str) -> dict | None:
    """The record of the run that finished training this fingerprint, if its checkpoint is still the last one."""
    if record_path is None or not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    last = record_path.with_name("last.pt")
    if record.get("fingerprint") != fingerprint or not last.is_file():
        return None
    state = load_checkpoint(last)
    return record if state.get("fingerprint") == fingerprint else None
