"""Project settings (see Kedro's configuration docs)."""

import warnings

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

from sstkd.hooks import LineageHooks, RunTagHooks

_lineage = LineageHooks()
HOOKS = (_lineage, RunTagHooks(_lineage))

CONFIG_LOADER_CLASS = OmegaConfigLoader
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

# Namespaced outputs such as "sstkd.seed_0.student_model" are read by the evaluation node on purpose.
warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
