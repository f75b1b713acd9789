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
from sstkd.errors import UserError, shown_path

MANIFEST_COLUMNS = ["sample_id", "split", "image_path", "mask_path", "height", "width", "image_sha1", "mask_sha1"]


class DatasetValidationError(UserError, ValueError):
    """The raw dataset is not usable; ``problems`` lists every problem found, one line each."""

    def __init__(self, problems: list[str], root: Path | str):
        self.problems = problems
        shown = "\n  - ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s) in the dataset at {shown_path(root)} (fix or remove these "
                         f"files; the README's 'Real datasets' section says what each layout expects):\n"
                         f"  - {shown}{more}")


@dataclass
class _Checked:
    row: dict | None
    problems: list[str]


def _sha1(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


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


MIN_IMAGE_SIDE = 8  # the networks' finest output stride: a smaller side gives a logit map under one pixel wide
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class UnsupportedImageError(UserError, ValueError):
    """An image that decodes but cannot be turned into 8-bit RGB without guessing; the message names the file."""


def decode_rgb(image: Image.Image, path: Path | str) -> np.ndarray:
    """``image`` as RGB ``(H, W, 3)`` uint8, scaled by the true range of its type, never saturated.

    * 8-bit modes (``L``, ``P``, ``RGB``, ``RGBA``, ``LA``, ``CMYK``, ``1``, ...) convert with Pillow (alpha dropped).
    * 16-bit greyscale (``I;16``, ``I;16B``, ...) is divided by 257 (65535 -> 255, 32768 -> 128) and repeated over
      the three channels. Pillow's ``convert("RGB")`` would clip every value above 255 to white.
    * ``I`` (32-bit integer, how some readers open a 16-bit PNG) is treated as 16-bit when its values lie in
      0..65535; otherwise it is refused, since its range is unknown.
    * ``F`` (floating point) is refused: there is no agreed range (0..1? 0..255? HDR?) to scale from.
    * 16-bit-per-channel RGB PNGs are already reduced to 8 bit by Pillow's decoder (high byte), which is the
      same scaling to within one level.

    Raises :class:`UnsupportedImageError` naming ``path`` for what is refused.
    """
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise UnsupportedImageError(
                f"{path}: 32-bit integer image with values {values.min()}..{values.max()} outside 0..65535; "
                "convert it to 8 or 16 bit")
        grey = np.rint(values.astype(np.float64) / 257.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "F":
        raise UnsupportedImageError(f"{path}: floating-point image (mode F) has no defined range; "
                                    "convert it to 8 or 16 bit")
    try:
        return np.array(image.convert("RGB"))  # writable: torch.from_numpy warns on read-only buffers
    except ValueError as error:
        raise UnsupportedImageError(f"{path}: cannot convert image mode {image.mode} to RGB ({error})") from None


def read_image(path: Path) -> np.ndarray:
    """An RGB image ``(H, W, 3)`` uint8, decoded by :func:`decode_rgb` (16-bit scaled, float refused)."""
    with Image.open(path) as image:
        return decode_rgb(image, path)


def _without(path: Path, error: Exception) -> str:
    """``error``'s message less the file's path (the problem line names it already, relative to the root)."""
    return str(error).replace(f"{path}: ", "").replace(str(path), Path(path).name)


def _check_sample(source: SourceLayout, record) -> _Checked:
    problems: list[str] = []
    image_file = source.root / record.image_path
    try:
        # decode fully and as training will (a truncated file passes Image.open but fails here)
        height, width = read_image(image_file).shape[:2]
    except UnsupportedImageError as error:
        return _Checked(None, [str(error)])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return _Checked(None, [f"{record.image_path}: unreadable or corrupt image ({_without(image_file, error)})"])
    if min(height, width) < MIN_IMAGE_SIDE:
        problems.append(f"{image_file}: image is {width}x{height}, too small to train on "
                        f"(each side must be at least {MIN_IMAGE_SIDE} pixels)")
    if record.mask_path is None:
        return _Checked(None, [*problems, f"{image_file}: no mask found for sample {record.sample_id!r}"])
    mask_file = source.root / record.mask_path
    try:
        mask = read_mask(mask_file)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return _Checked(None, [*problems, f"{record.mask_path}: unreadable mask ({_without(mask_file, error)})"])
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
