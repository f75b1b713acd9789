"""Glue shared by the teacher and distillation pipelines: train one network inside its own MLflow run."""

from __future__ import annotations

import numpy as np

from sstkd import tracking
from sstkd.models.segmenter import NetworkConfig
from sstkd.training.launch import run_data_parallel
from sstkd.training.loop import TrainingConfig
from sstkd.training.recipe import network_from_payload, train_network


def train_and_track(name: str, role: str, cache: dict, dataset_info: dict, statistics: dict,
                    network: NetworkConfig, losses: dict, training: TrainingConfig,
                    teacher_payload: dict | None = None) -> tuple[dict, list[dict]]:
    """Train ``name`` in a nested MLflow run (params, per-epoch metrics, the model) and return its payload."""
    tags = {"sstkd.role": role, "sstkd.model": name, "data.fingerprint": dataset_info.get("fingerprint", ""),
            **tracking.git_state(), **tracking.dvc_hashes()}
    if teacher_payload is not None:
        tags["sstkd.teacher_run_id"] = teacher_payload.get("mlflow_run_id", "")
        tags["sstkd.teacher_fingerprint"] = teacher_payload.get("fingerprint", "")
    with tracking.nested_run(name, tags) as run_id:
        tracking.log_params({"network": network.model_dump(), "losses": losses, "training": training.model_dump()})
        kwargs = dict(name=name, cache=cache, dataset_info=dataset_info, statistics=statistics,
                      network_config=network, losses=losses, training=training, teacher_payload=teacher_payload,
                      checkpoint_root=training.checkpoint_root)
        if training.nproc > 1 or training.nnodes != "1":
            results = run_data_parallel(training.nproc, kwargs, training.nnodes, training.rdzv_endpoint)
            payload, history = results[min(results)]
            unlogged = history  # the workers are separate processes, outside this MLflow run
        else:
            payload, result = train_network(**kwargs, callbacks=[tracking.epoch_logger()])
            history = result.history
            unlogged = history[: result.resumed_from_epoch or 0]  # epochs restored from a checkpoint
        log_epoch = tracking.epoch_logger()
        for record in unlogged:
            log_epoch(record["epoch"], record)
        payload["role"] = role
        payload["mlflow_run_id"] = run_id or ""
        tracking.log_metrics({"best_val_miou": payload["best_val_miou"], "best_epoch": payload["best_epoch"]})
        if run_id:
            tracking.set_tags({"sstkd.fingerprint": payload["fingerprint"]})
            crop = training.crop_size
            example = np.zeros((1, 3, crop[0], crop[1]), dtype=np.float32)
            tracking.log_torch_model(network_from_payload(payload), example)
    return payload, history
