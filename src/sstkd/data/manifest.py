"""The manifest: one row per sample, built and validated before anything trains.

Validation reads every file once (in a thread pool: PIL decodes without the GIL) and collects *all* problems
before failing, so a user fixes a broken dataset in one pass. Every message names the file and the problem.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from sstkd.data.sources import IGNORE_INDEX, UNKNOWN_LABEL, SourceLayout

MANIFEST_COLUMNS = ["sample_id", "split", "image_path", "mask_path", "height", "width", "image_sha1", "mask_sha1"]


class DatasetValidationError(ValueError):
    """The raw dataset is not usable; ``problems`` lists every problem found, one line each."""

    def __init__(self, problems: list[str], root: Path | str):
        self.problems = problems
        shown = "\n  - ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s) in the dataset at {root}:\n  - {shown}{more}")


@dataclass
class _Checked:
    row: dict | None
    problems: list[str]


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_mask(path: Path) -> np.ndarray:
    """A mask's stored values ``(H, W)`` uint8. Palette PNGs give their indices, as VOC intends."""
    with Image.open(path) as mask:
        if mask.mode not in ("L", "P", "I;16", "I"):
            raise ValueError(f"{path}: mask must be a single-channel or palette PNG, got mode {mask.mode}")
        values = np.asarray(mask)
    if values.dtype != np.uint8:
        if values.min() < 0 or values.max() > 255:
            raise ValueError(f"{path}: mask values must lie in 0..255, found {values.min()}..{values.max()}")
        values = values.astype(np.uint8)
    return values


def read_image(path: Path) -> np.ndarray:
    """An RGB image ``(H, W, 3)`` uint8."""
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))  # writable: torch.from_numpy warns on read-only buffers


def _check_sample(source: SourceLayout, record) -> _Checked:
    problems: list[str] = []
    image_file = source.root / record.image_path
    try:
        with Image.open(image_file) as image:
            image.load()  # decode fully: a truncated file passes Image.open but fails here
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        return _Checked(None, [f"{image_file}: unreadable or corrupt image ({error})"])
    if record.mask_path is None:
        return _Checked(None, [f"{image_file}: no mask found for sample {record.sample_id!r}"])
    mask_file = source.root / record.mask_path
    try:
        mask = read_mask(mask_file)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return _Checked(None, [f"{mask_file}: unreadable mask ({error})"])
    if mask.shape != (height, width):
        problems.append(
            f"{mask_file}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image size {width}x{height}"
        )
    unknown = np.unique(mask[source.label_lut[mask] == UNKNOWN_LABEL])
    if unknown.size:
        problems.append(
            f"{mask_file}: label id(s) {unknown.tolist()[:10]} are not defined for the {source.name} layout "
            f"({source.num_classes} classes, {IGNORE_INDEX} = ignore)"
        )
    row = {
        "sample_id": record.sample_id,
        "split": record.split,
        "image_path": record.image_path,
        "mask_path": record.mask_path,
        "height": height,
        "width": width,
        "image_sha1": _sha1(image_file),
        "mask_sha1": _sha1(mask_file),
    }
    return _Checked(row, problems)


def build_manifest(
    source: SourceLayout, required_splits: list[str], workers: int = 4, progress=None
) -> pd.DataFrame:
    """Scan and validate ``source``; return the manifest or raise :class:`DatasetValidationError`."""
    problems: list[str] = list(source.problems)
    problems += [f"{source.root / mask}: mask has no matching image" for mask in source.orphan_masks]
    duplicates = [sid for sid, n in Counter(r.sample_id for r in source.records).items() if n > 1]
    problems += [f"sample id {sid!r} appears more than once in {source.root}" for sid in duplicates]
    present = Counter(r.split for r in source.records)
    problems += [
        f"split {split!r} is empty: no samples found for it under {source.root}"
        for split in required_splits
        if present[split] == 0
    ]
    checked = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for result in pool.map(lambda record: _check_sample(source, record), source.records):
            checked.append(result)
            if progress is not None:
                progress(1)
    rows = []
    for result in checked:
        problems += result.problems
        if result.row is not None:
            rows.append(result.row)
    if problems:
        raise DatasetValidationError(problems, source.root)
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    return manifest[manifest["split"].isin(required_splits)].reset_index(drop=True)


def manifest_fingerprint(manifest: pd.DataFrame) -> str:
    """A content hash of the dataset the manifest describes: the same files give the same fingerprint."""
    keys = manifest.sort_values("sample_id")[["sample_id", "split", "image_sha1", "mask_sha1"]]
    return hashlib.sha1(keys.to_csv(index=False).encode()).hexdigest()
