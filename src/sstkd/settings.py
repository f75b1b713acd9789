"""Project settings (see Kedro's configuration docs)."""

import warnings

from kedro.config import OmegaConfigLoader

# the loader's arguments live in sstkd.config_loading: the project's own loaders must use the same ones
from sstkd.config_loading import CONFIG_LOADER_ARGS as CONFIG_LOADER_ARGS
from sstkd.hooks import LineageHooks, RunTagHooks

_lineage = LineageHooks()
HOOKS = (_lineage, RunTagHooks(_lineage))

CONFIG_LOADER_CLASS = OmegaConfigLoader

# Namespaced outputs such as "sstkd.seed_0.student_model" are read by the evaluation node on purpose.
warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
