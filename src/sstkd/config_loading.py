"""How this project's configuration is read: one set of loader arguments for the session (``settings.py``) and
for every loader the project builds itself.

Each ``OmegaConfigLoader`` clears OmegaConf's global ``oc.env`` resolver when it is created and registers its own
custom resolvers again: a loader built without ``oc.env`` leaves the session's loader unable to read the dataset
envs' catalogs (``${oc.env:SSTKD_DATASET_ROOT, ...}``) for the rest of the run.
"""

from __future__ import annotations

from pathlib import Path

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    # An environment's parameters (conf/cityscapes, conf/tiny, ...) override single keys, not whole top-level
    # blocks. Its catalog entries replace base's whole: a user's `raw_dataset` must never inherit the
    # embedded dataset's `generated: true` (that once let the generator overwrite a user's folder).
    "merge_strategy": {"parameters": "soft", "catalog": "destructive"},
    # `${oc.env:SSTKD_DATASET_ROOT, ...}` in the dataset envs' catalogs (Kedro enables oc.env only for credentials).
    "custom_resolvers": {"oc.env": oc.env},
}


def project_config_loader(conf_source: str | Path, env: str | None) -> OmegaConfigLoader:
    """The committed configuration of ``base`` + ``env`` (no runtime parameters), read as the session reads it."""
    return OmegaConfigLoader(str(conf_source), env=env, **CONFIG_LOADER_ARGS)
