"""A Kedro CLI plugin (entry point ``kedro.cli_hooks`` in pyproject.toml).

The ``kedro`` command loads CLI hooks before any plugin's commands, and so before kedro-mlflow's CLI defines
``KedroPipelineModel``, whose untyped ``predict`` makes MLflow print "Add type hints to the `predict` method" at
every start. This project never uses that class (its served model declares its types), so the module is
imported here first with that one-time warning muted; MLflow warns once per process, so it stays quiet after.

Before any command runs, the console's log becomes plain unwrapped lines when stdout is not a terminal
(:mod:`sstkd.logs`), and a user's mistake (:class:`sstkd.errors.UserError`) is set to end in one short
``Error: ...`` message instead of a traceback (:func:`sstkd.errors.install_short_errors`).
"""

from __future__ import annotations

import contextlib
import importlib
import warnings

from kedro.framework.cli.hooks import cli_hook_impl

from sstkd.errors import install_short_errors
from sstkd.logs import plain_lines_off_terminal

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


@cli_hook_impl
def before_command_run(project_metadata, command_args) -> None:
    install_short_errors()
    plain_lines_off_terminal()
