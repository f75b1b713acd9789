"""Project hooks: the run's own configuration for the pipeline registry and the check of its top-level
parameter groups, one run at a time, lineage tags on the run's MLflow run."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click
import torch
from kedro.framework.hooks import hook_impl

from sstkd import tracking
from sstkd.config import ParameterError, check_parameters, emulated_cpu_bf16_problems
from sstkd.config_loading import project_config_loader
from sstkd.errors import install_short_errors
from sstkd.evaluation.study_summary import split_label, study_console_table
from sstkd.locking import ProjectLock
from sstkd.logs import plain_lines_off_terminal
from sstkd.pipeline_registry import use_run_parameters
from sstkd.reproduce import PARENT_RUN_VARIABLE
from sstkd.training.recipe import RUN_ONLY_TRAINING_KEYS

log = logging.getLogger(__name__)

LOCK_FILE = Path("data") / ".sstkd-run.lock"


class ParameterGroupError(ParameterError, click.ClickException):
    """A :class:`ParameterError` that the ``kedro`` CLI prints as one short ``Error: ...`` message."""

    def __init__(self, message: str, problems: list[str]):
        click.ClickException.__init__(self, message)
        self.problems = problems


class LineageHooks:
    def __init__(self) -> None:
        self.env = "local"
        self._context = None
        self._parameters: dict = {}
        # One lock per project for the life of the process: a notebook that runs again after an interrupted run
        # (KeyboardInterrupt skips on_pipeline_error) still holds it, and must not be refused by itself.
        self._locks: dict[Path, ProjectLock] = {}

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        install_short_errors()  # again: a session that configured logging anew has a new excepthook
        plain_lines_off_terminal()
        parameters = context.config_loader["parameters"]  # not context.params: that would load the pipelines
        # A typo or a wrong type anywhere (`--params trainig.epochs=1`, `training.epochs=abc`, a method's loss
        # option, in a yml) fails here, before any node runs; as a CLI error, so `kedro run` prints the message,
        # not a page of traceback through pluggy.
        try:
            check_parameters(parameters)
        except ParameterError as error:
            raise ParameterGroupError(str(error), error.problems) from None
        # Before anything loads the pipelines: the methods to run come from this session's --env and --params.
        use_run_parameters(parameters)
        # Intra-op threads: all cores unless the user says otherwise (PyTorch's default can oversubscribe
        # when loader workers also compute).
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, os.cpu_count() or 1))
        self.env = context.env or "local"
        tracking.set_run_context(**{"kedro.env": self.env})  # recorded in each model file's lineage
        self._context = context
        self._parameters = parameters

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        """Before kedro-mlflow opens the run's MLflow run: check the data root, refuse a second concurrent run,
        close the MLflow runs of this project's runs that were killed."""
        if self._context is not None:
            _check_dataset_root_is_used(self._context, self._parameters)
            _check_no_emulated_bf16(self._parameters, pipeline)
            _check_params_keep_the_study(self._context, pipeline, catalog)
        project = Path(run_params.get("project_path") or ".").resolve()
        if str((self._parameters.get("training") or {}).get("nnodes", "1")) != "1":
            # Every node runs the same command, often on a shared file system: a lock would refuse node 2.
            log.info("multi-node training: the project's run lock is not taken")
        else:
            self._locks.setdefault(project, ProjectLock(project / LOCK_FILE)).acquire(_describe(run_params))
        for run_id in tracking.fail_abandoned_runs(project):
            log.warning("MLflow run %s was still RUNNING from a run of this project whose process is gone "
                        "(killed?): marked FAILED", run_id)

    @hook_impl
    def after_pipeline_run(self, pipeline, catalog) -> None:
        self._release()
        if "study_table" in pipeline.all_outputs():
            _print_study(catalog, self._parameters.get("study") or {})
        if self._context is not None and "report_markdown" in pipeline.all_outputs():
            entry = self._context.config_loader["catalog"].get("report_markdown") or {}
            path = (entry.get("dataset") or entry).get("filepath")
            if path:
                log.info("The report is in %s (figures and metrics.json beside it)", path)

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._release()

    def _release(self) -> None:
        for lock in self._locks.values():
            lock.release()


class RunTagHooks:
    """Lineage tags on the pipeline's MLflow run (kedro-mlflow starts the run; this runs after it)."""

    def __init__(self, lineage: LineageHooks):
        self._lineage = lineage

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        tracking.set_tags({
            **tracking.git_state(),
            **tracking.dvc_hashes(),
            "kedro.pipeline": ",".join(run_params.get("pipeline_names") or [])
                              or run_params.get("pipeline_name") or "__default__",
            "kedro.env": run_params.get("env") or self._lineage.env,
            **({"kedro.session_id": run_params["session_id"]} if run_params.get("session_id") else {}),
            # kedro-mlflow's `runner` tag is an object's repr (`<... object at 0x7f...>`): keep the class name
            "runner": _class_name(run_params.get("runner")),
            **tracking.process_tags(Path(run_params.get("project_path") or ".").resolve()),
            **{f"compute.{k}": v for k, v in tracking.compute_facts().items()},
            **_parent_run_tag(),
        })


def _print_study(catalog, study: dict) -> None:
    """The study's table, the last thing a run prints: plain aligned text on stdout (a terminal or a log file)."""
    try:
        methods, comparisons = catalog.load("study_table"), catalog.load("study_comparisons")
    except Exception as error:  # noqa: BLE001 - the run succeeded; a table it cannot show must not fail it
        log.warning("the study's table could not be shown (%s); it is in the report", error)
        return
    confidence = float(study.get("confidence", 0.95))
    seeds = study.get("seeds", "")
    click.echo(f"\nThe study: {split_label(methods, 'metrics')} in %, "
               f"mean ± std [{100 * confidence:g}% interval] over seeds {seeds}; "
               f"paired differences and verdicts against each reference\n"
               + "\n".join(study_console_table(methods, comparisons)) + "\n")


def _parent_run_tag() -> dict[str, str]:
    """Under ``sstkd repro``, this stage's run is a child of the study's run (see :mod:`sstkd.reproduce`)."""
    parent = os.environ.get(PARENT_RUN_VARIABLE)
    if not parent or not tracking.active():
        return {}
    if not tracking.run_exists(parent):
        log.warning("%s=%s is not a run of this MLflow store: this run is not nested under it",
                    PARENT_RUN_VARIABLE, parent)
        return {}
    return {"mlflow.parentRunId": parent}


def _class_name(runner) -> str:
    text = runner if isinstance(runner, str) else type(runner).__name__
    return text.split(" object at ")[0].lstrip("<").rsplit(".", 1)[-1]


def _describe(run_params: dict) -> str:
    pipelines = run_params.get("pipeline_names") or ["__default__"]
    return f"kedro run --env {run_params.get('env') or 'local'} --pipelines {','.join(pipelines)}"


def _check_dataset_root_is_used(context, parameters: dict) -> None:
    """A dataset root must be read by the env's raw_dataset, or the run would silently train on other data."""
    runtime = context._runtime_params or {}
    path = str((context.config_loader["catalog"].get("raw_dataset") or {}).get("path", ""))
    env = context.env or "local"
    if "dataset_root" in parameters and "dataset_root" not in runtime:
        raise ParameterError("dataset_root is set in a parameters file, where the catalog cannot read it: give it on "
                         "the command line (--params dataset_root=/path) or as SSTKD_DATASET_ROOT")
    if "dataset_root" in runtime and path != str(runtime["dataset_root"]):
        raise ParameterError(
            f"dataset_root={runtime['dataset_root']} is not used by the '{env}' environment, whose raw_dataset "
            f"is {path or 'undefined'} (the embedded texture mosaics take no dataset_root). Choose a dataset "
            f"env: --env cityscapes|voc|ade20k|generic.")
    variable = os.environ.get("SSTKD_DATASET_ROOT")
    if variable and path != variable:
        log.warning("SSTKD_DATASET_ROOT=%s is set but the '%s' environment does not read it: this run uses %s",
                    variable, env, path)


# `--params` keys that change no model: choosing methods, the report, how training runs (not what it makes).
_MODEL_NEUTRAL_PARAMS = ("data_root", "dataset_root", "use_sbd_aug", "distillation.run", "evaluation", "study",
                         *(f"training.{key}" for key in RUN_ONLY_TRAINING_KEYS),
                         "pretraining.training.progress", "pretraining.checkpoint_root")


def _check_no_emulated_bf16(parameters: dict, pipeline) -> None:
    """Refuse, before the first node, to train the models of this pipeline with bf16 autocast that this CPU would
    emulate: hours lost to a setting it cannot run fast."""
    outputs = pipeline.all_outputs()
    methods = sorted({name.split(".")[0] for name in outputs if name.endswith(".student_model")})
    emulated = emulated_cpu_bf16_problems(parameters, "teacher_model" in outputs, methods)
    if emulated:
        raise ParameterGroupError("this machine would emulate the run's bf16:\n  " + "\n  ".join(emulated), emulated)


def _check_params_keep_the_study(context, pipeline, catalog) -> None:
    """A ``--params`` run that changes a model's parameters must not silently replace the env's study models.

    It runs when ``data_root`` is given (``data_root=data/try1``: the experiment's own root; the study's own root:
    replace it on purpose), or when none of the models it would write exists yet.
    """
    runtime = context._runtime_params or {}
    if not runtime or "data_root" in runtime:
        return
    loader = context.config_loader
    committed = tracking.flat_keys(project_config_loader(loader.conf_source, loader.env)["parameters"])
    changed = {key: value for key, value in tracking.flat_keys(runtime).items()
               if not key.startswith(_MODEL_NEUTRAL_PARAMS) and committed.get(key, object()) != value}
    models = [name for name in pipeline.all_outputs()
              if name in ("teacher_model", "pretrained_backbones") or name.endswith(".student_model")]
    existing = [name for name in models if catalog.exists(name)]
    if changed and existing:
        root = context.config_loader["globals"].get("data_root", "data")
        given = ",".join(f"{k}={v}" for k, v in changed.items())
        raise StudyOverwriteError(
            f"--params {given} changes the parameters of models the study under {root}/ already has "
            f"({', '.join(sorted(existing))}); this run would replace them. Give the experiment its own data root: "
            f"--params {given},data_root={root}-experiment (or data_root={root} to replace the study on purpose).")


class StudyOverwriteError(click.ClickException):
    """Printed by the ``kedro`` CLI as one short message."""
