"""Project pipelines.

The distillation methods to run are data, not code: ``distillation.run`` in the parameters of the active
environment (``kedro run --env X`` exports ``KEDRO_ENV``) decides which namespaced method pipelines exist.
"""

from __future__ import annotations

import os
from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.pipeline import Pipeline

from sstkd.pipelines import distillation, evaluation, ingestion, preprocessing, synthetic, teacher
from sstkd.pipelines.distillation.pipeline import DEFAULT_METHODS


def configured_methods(conf_source: str | Path = "conf", env: str | None = None) -> list[str]:
    """``distillation.run`` from the parameters of ``base`` + the active environment."""
    env = env or os.environ.get("KEDRO_ENV") or "local"
    if not Path(conf_source).is_dir():
        return DEFAULT_METHODS
    loader = OmegaConfigLoader(str(conf_source), base_env="base", default_run_env=env,
                               merge_strategy={"parameters": "soft"})
    parameters = loader["parameters"]
    distill = parameters.get("distillation", {})
    methods = list(distill.get("run", DEFAULT_METHODS))
    unknown = [m for m in methods if m not in distill.get("methods", {})]
    if unknown:
        raise ValueError(f"distillation.run names {unknown}, which have no entry under distillation.methods "
                         f"(known: {sorted(distill.get('methods', {}))})")
    return methods


def register_pipelines() -> dict[str, Pipeline]:
    methods = configured_methods()
    stages = {
        "synthetic": synthetic.create_pipeline(),
        "ingestion": ingestion.create_pipeline(),
        "preprocessing": preprocessing.create_pipeline(),
        "teacher": teacher.create_pipeline(),
        "distillation": distillation.create_pipeline(methods),
        "evaluation": evaluation.create_pipeline(methods),
    }
    pipelines = dict(stages)
    pipelines["data"] = stages["synthetic"] + stages["ingestion"] + stages["preprocessing"]
    pipelines["study"] = stages["ingestion"] + stages["preprocessing"] + stages["teacher"] + \
        stages["distillation"] + stages["evaluation"]
    pipelines["__default__"] = stages["synthetic"] + pipelines["study"]
    return pipelines
