"""Scan the raw dataset, validate every file, and write the manifest."""

import pandas as pd
from tqdm.auto import tqdm

from sstkd import tracking
from sstkd.config import IngestionParams, validate
from sstkd.data.manifest import build_manifest, manifest_fingerprint
from sstkd.data.sources import SourceLayout


def build_validated_manifest(raw_dataset: SourceLayout, data: dict) -> tuple[pd.DataFrame, dict]:
    params = validate(IngestionParams, data, "data")
    with tqdm(total=len(raw_dataset.records), desc="validating samples", unit="img") as bar:
        manifest = build_manifest(raw_dataset, params.required_splits, params.workers, progress=bar.update)
    fingerprint = manifest_fingerprint(manifest)
    info = raw_dataset.info() | {
        "fingerprint": fingerprint,
        "samples": manifest.groupby("split").size().to_dict(),
    }
    tracking.set_tags({"data.fingerprint": fingerprint, "data.layout": raw_dataset.name,
                       "data.root": str(raw_dataset.root)})
    return manifest, info
