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

QUIETED = "Add type hints to the `predict` method"


def _import_quietly(module: str) -> None:
    """Import ``module``, dropping only MLflow's type-hint warning; every other warning is shown as usual."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def showwarning(message, *args, **kwargs):
            if QUIETED not in str(message):
                show(message, *args, **kwargs)

        # MLflow forces a "once" filter around its check, so a filter here would not win; its output comes here
        warnings.showwarning = showwarning
        with contextlib.suppress(Exception):  # never break `kedro` from here: kedro reports the plugin's errors
            importlib.import_module(module)


_import_quietly("kedro_mlflow.mlflow")
