"""Lineage tags on the pipeline's MLflow run (kedro-mlflow starts the run; this hook runs after it)."""

from __future__ import annotations

import logging
import os

import torch
from kedro.framework.hooks import hook_impl

from sstkd import tracking

log = logging.getLogger(__name__)


class LineageHooks:
    @hook_impl
    def after_context_created(self, context) -> None:
        # Intra-op threads: all cores unless the user says otherwise (PyTorch's default can oversubscribe
        # when loader workers also compute).
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, os.cpu_count() or 1))
        self._env = context.env

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        tracking.set_tags({
            **tracking.git_state(),
            **tracking.dvc_hashes(),
            "kedro.pipeline": run_params.get("pipeline_names") or run_params.get("pipeline_name") or "__default__",
            "kedro.env": run_params.get("env") or getattr(self, "_env", "local"),
            "kedro.session_id": run_params.get("session_id", ""),
        })
