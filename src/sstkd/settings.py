"""Project settings (see Kedro's configuration docs)."""

import warnings

from kedro.config import OmegaConfigLoader

from sstkd.hooks import LineageHooks

HOOKS = (LineageHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
    # An environment (conf/cityscapes, conf/tiny, ...) overrides single keys, not whole top-level blocks.
    "merge_strategy": {"parameters": "soft", "catalog": "soft"},
}

# Namespaced outputs such as "sstkd.student_model" are read by the evaluation node on purpose.
warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
