"""Lineage tags on the pipeline's MLflow run (kedro-mlflow starts the run; this hook runs after it), and the
check of the top-level parameter groups when the context is created."""

from __future__ import annotations

import logging
import os

import click
import torch
from kedro.framework.hooks import hook_impl

from sstkd import tracking
from sstkd.config import ParameterError, check_parameter_groups

log = logging.getLogger(__name__)


class ParameterGroupError(ParameterError, click.ClickException):
    """A :class:`ParameterError` that the ``kedro`` CLI prints as one short ``Error: ...`` message."""

    def __init__(self, message: str):
        click.ClickException.__init__(self, message)


class LineageHooks:
    @hook_impl
    def after_context_created(self, context) -> None:
        # Intra-op threads: all cores unless the user says otherwise (PyTorch's default can oversubscribe
        # when loader workers also compute).
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, os.cpu_count() or 1))
        self._env = context.env
        # A top-level typo (`--params trainig.epochs=1`, or in a yml) fails here, before any node runs; as a CLI
        # error, so `kedro run` prints the message, not a page of traceback through pluggy.
        try:
            check_parameter_groups(context.params)
        except ParameterError as error:
            raise ParameterGroupError(str(error)) from None

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        tracking.set_tags({
            **tracking.git_state(),
            **tracking.dvc_hashes(),
            "kedro.pipeline": run_params.get("pipeline_names") or run_params.get("pipeline_name") or "__default__",
            "kedro.env": run_params.get("env") or getattr(self, "_env", "local"),
            "kedro.session_id": run_params.get("session_id", ""),
        })
