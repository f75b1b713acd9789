"""Project pipelines.

The distillation methods and seeds to run are data, not code: ``distillation.run`` and ``study.seeds`` in the
parameters of the run decide which namespaced (method, seed) pipelines exist. "The parameters of the run" are those of the session's own config
loader — the active ``--env`` and the command line's ``--params`` included — which the project hook hands over
(:func:`use_run_parameters`) as soon as the session's context exists, before Kedro first loads the pipelines.
``kedro run --env X`` does not export ``KEDRO_ENV``, so reading that variable would silently pick the wrong list.
"""

from __future__ import annotations

import os
from pathlib import Path

from kedro.pipeline import Pipeline

from sstkd.config import StudyParams, validate
from sstkd.config_loading import project_config_loader
from sstkd.pipelines import (
    distillation,
    evaluation,
    ingestion,
    preprocessing,
    pretraining,
    synthetic,
    teacher,
)
from sstkd.pipelines.distillation.pipeline import DEFAULT_METHODS, DEFAULT_SEEDS
from sstkd.study import check_method_name, parse_method_list

_run_parameters: dict | None = None  # the running session's parameters, set by the project hook


def use_run_parameters(parameters: dict) -> None:
    """Build the pipelines from ``parameters`` (the session's); reloads them if they were built from others."""
    global _run_parameters
    if parameters == _run_parameters:
        return
    _run_parameters = parameters
    from kedro.framework.project import pipelines

    pipelines.configure(__name__)  # forget pipelines registered from other parameters (a previous session)


def methods_to_run(parameters: dict) -> list[str]:
    """``distillation.run`` of ``parameters``, checked against ``distillation.methods``.

    An entry may join several names with ``+`` (``--params "distillation.run=[baseline+cwd]"``): Kedro splits
    ``--params`` at commas, so a list of several names cannot be written there with commas.
    """
    distill = parameters.get("distillation") or {}
    methods = parse_method_list(distill.get("run", DEFAULT_METHODS))
    if not methods:  # never "nothing given, so the defaults": an empty list would train three unasked methods
        raise ValueError("distillation.run is empty: name the methods to train, e.g. [baseline, pixel_kd, sstkd]")
    known = distill.get("methods") or {}
    for name in methods:
        check_method_name(name, "distillation.run")
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"distillation.run names {unknown}, which have no entry under distillation.methods "
                         f"(known: {sorted(known)})")
    if len(set(methods)) != len(methods):
        raise ValueError(f"distillation.run names a method twice: {methods}")
    return methods


def seeds_to_run(parameters: dict) -> list[int]:
    """``study.seeds`` of ``parameters``: every method is trained once per seed."""
    return validate(StudyParams, parameters.get("study") or {}, "study").seeds


def _configured_parameters(conf_source: str | Path, env: str | None) -> dict | None:
    """The running session's parameters, or those of ``base`` + ``env`` read from ``conf_source``.

    Without a session (``kedro registry``, tests), ``env`` defaults to ``KEDRO_ENV`` or ``local``.
    """
    if _run_parameters is not None and env is None:
        return _run_parameters
    env = env or os.environ.get("KEDRO_ENV") or "local"
    if not Path(conf_source).is_dir():
        return None
    return project_config_loader(conf_source, env)["parameters"]


def configured_methods(conf_source: str | Path = "conf", env: str | None = None) -> list[str]:
    """``distillation.run`` of the running session, or of ``base`` + ``env`` read from ``conf_source``."""
    parameters = _configured_parameters(conf_source, env)
    return DEFAULT_METHODS if parameters is None else methods_to_run(parameters)


def configured_seeds(conf_source: str | Path = "conf", env: str | None = None) -> list[int]:
    """``study.seeds`` of the running session, or of ``base`` + ``env`` read from ``conf_source``."""
    parameters = _configured_parameters(conf_source, env)
    return DEFAULT_SEEDS if parameters is None else seeds_to_run(parameters)


def configured_pretraining(conf_source: str | Path = "conf", env: str | None = None) -> bool:
    """Whether the networks wait for the pretraining stage: ``pretraining.backbones`` is not empty."""
    parameters = _configured_parameters(conf_source, env)
    return bool(((parameters or {}).get("pretraining") or {}).get("backbones"))


def register_pipelines() -> dict[str, Pipeline]:
    methods, seeds, pretrained = configured_methods(), configured_seeds(), configured_pretraining()
    stages = {
        "synthetic": synthetic.create_pipeline(),
        "ingestion": ingestion.create_pipeline(),
        "preprocessing": preprocessing.create_pipeline(),
        "pretraining": pretraining.create_pipeline(),
        "teacher": teacher.create_pipeline(pretrained=pretrained),
        "distillation": distillation.create_pipeline(methods, seeds, pretrained=pretrained),
        "evaluation": evaluation.create_pipeline(methods, seeds),
    }
    pipelines = dict(stages)
    pipelines["data"] = stages["synthetic"] + stages["ingestion"] + stages["preprocessing"]
    pipelines["study"] = stages["ingestion"] + stages["preprocessing"] + stages["pretraining"] + stages["teacher"] + \
        stages["distillation"] + stages["evaluation"]
    pipelines["__default__"] = stages["synthetic"] + pipelines["study"]
    return pipelines
