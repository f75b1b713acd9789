"""A Kedro CLI plugin (entry point ``kedro.cli_hooks`` in pyproject.toml).

The ``kedro`` command loads CLI hooks before any plugin's commands, and so before kedro-mlflow's CLI defines
``KedroPipelineModel``, whose untyped ``predict`` makes MLflow print "Add type hints to the `predict` method" at
every start. This project never uses that class (its served model declares its types), so the module is
imported here first with that one-time warning muted; MLflow warns once per process, so it stays quiet after.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings


def _import_without_warnings(module: str) -> None:
    with warnings.catch_warnings():
        # MLflow forces a "once" filter around its check, so a filter here would not win; its output goes here
        warnings.showwarning = lambda *args, **kwargs: None
        with contextlib.suppress(ImportError):  # kedro-mlflow not installed: nothing to quiet
            importlib.import_module(module)


_import_without_warnings("kedro_mlflow.mlflow")
