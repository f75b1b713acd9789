"""Scan the raw dataset, validate every file, and write the manifest."""

from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from sstkd import tracking
from sstkd.config import IngestionParams, validate
from sstkd.data.manifest import build_manifest, manifest_fingerprint
from sstkd.data.sources import SourceLayout


def build_validated_manifest(raw_dataset: SourceLayout, data: dict) -> tuple[pd.DataFrame, dict]:
    params = validate(IngestionParams, data, "data")
    with tqdm(total=len(raw_dataset.records), desc="validating samples", unit="img", disable=None) as bar:
        manifest = build_manifest(raw_dataset, params.required_splits, params.workers, progress=bar.update)
    fingerprint = manifest_fingerprint(manifest)
    info = raw_dataset.info() | {
        "root": portable_path(raw_dataset.root),
        "fingerprint": fingerprint,
        "samples": manifest.groupby("split").size().to_dict(),
    }
    tracking.set_tags({"data.fingerprint": fingerprint, "data.layout": raw_dataset.name,
                       "data.root": info["root"]})
    return manifest, info


def portable_path(path: Path) -> str:
    """``path`` relative to the project (the working directory) when it lies inside it, so that a record of the
    data (``dataset_info.json``, its DVC hash, the lineage tags) is the same in every checkout."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)  # a dataset outside the project: its location is machine-specific anyway
