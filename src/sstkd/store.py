"""Where the project's MLflow store is: one lookup below both ``sstkd lineage`` (audit) and ``sstkd repro``."""

from __future__ import annotations

from pathlib import Path

import yaml


def default_tracking_uri(project: Path = Path(".")) -> str:
    """The tracking URI of ``conf/base/mlflow.yml`` (the one every ``kedro run`` logs to), else the sqlite default."""
    config = project / "conf" / "base" / "mlflow.yml"
    if config.exists():
        uri = (yaml.safe_load(config.read_text()) or {}).get("server", {}).get("mlflow_tracking_uri")
        if uri:
            return uri
    return "sqlite:///mlflow.db"
