"""Texture mosaics: a seeded, deterministic segmentation dataset whose classes differ by texture.

Each image is a partition of the plane into irregular regions (a Voronoi diagram of random seeds, computed on
coordinates bent by a smooth random displacement field, so boundaries are curved). Each region is filled with the
texture of its class, modulating a random base colour with random contrast, so that no class is a constant colour
and colour alone never decides the label.

Half of the classes are told apart by *structure* (orientation and frequency of oriented patterns), half by
*statistics* (intensity distribution, grain size, sparsity, contrast). Two pairs are deliberately hard:
``stripes_45``/``stripes_135`` have identical statistics and differ only by orientation, and
``gaussian_grain``/``binary_grain`` have the same mean, variance and grain size and differ only by the shape of
their intensity distribution.

The on-disk layout is the project's generic folder layout (see :mod:`sstkd.data.sources`)::

    <root>/images/<id>.png        RGB, uint8
    <root>/masks/<id>.png         single channel, class id per pixel, 255 = ignore
    <root>/splits/<split>.txt     one id per line
    <root>/classes.json           {"classes": [...], "ignore_index": 255, "generator": {...}}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from sstkd.atomic import ForeignFolderError, replaced_directory
from sstkd.data.dead_leaves import LEAF_CLASSES, render_dead_leaves
from sstkd.data.layered_textures import LAYERED_CLASSES, render_layered
from sstkd.data.noise import smooth_noise

STRUCTURAL_CLASSES = ("stripes_0", "stripes_45", "stripes_90", "stripes_135", "crosshatch")
STATISTICAL_CLASSES = ("gaussian_grain", "binary_grain", "coarse_grain", "sparse_speckle", "faint_smooth")
TEXTURE_CLASSES = STRUCTURAL_CLASSES + STATISTICAL_CLASSES
FAMILY_CLASSES = {"mosaics": TEXTURE_CLASSES, "dead_leaves": LEAF_CLASSES, "layered": LAYERED_CLASSES}
IGNORE_INDEX = 255


@dataclass(frozen=True)
class MosaicSpec:
    """Everything that decides the bytes of a texture-mosaic dataset."""

    seed: int = 0
    image_size: int = 128
    splits: dict[str, int] = field(default_factory=lambda: {"train": 256, "val": 64, "test": 64})
    min_regions: int = 3
    max_regions: int = 7
    boundary_warp: float = 10.0
    sensor_noise: float = 0.02
    # or "dead_leaves" (sstkd.data.dead_leaves): another family of shapes and textures; or "layered"
    # (sstkd.data.layered_textures): Voronoi regions of textures of textures, on which capacity matters
    family: str = "mosaics"

    def __post_init__(self) -> None:
        if self.family not in FAMILY_CLASSES:
            raise ValueError(f"synthetic.family must be one of {sorted(FAMILY_CLASSES)}, got {self.family!r}")
        if self.image_size < 16:
            raise ValueError(f"synthetic.image_size must be >= 16, got {self.image_size}")
        if not 1 <= self.min_regions <= self.max_regions:
            raise ValueError(
                f"synthetic.min_regions/max_regions must satisfy 1 <= min <= max, got {self.min_regions}, {self.max_regions}"
            )
        for split, count in self.splits.items():
            if int(count) < 1:
                raise ValueError(f"synthetic.splits.{split} must be >= 1, got {count}")

    @property
    def classes(self) -> tuple[str, ...]:
        return FAMILY_CLASSES[self.family]

    def fingerprint(self) -> str:
        """A short hash of the spec: the dataset on disk is regenerated only when it changes."""
        spec = asdict(self)
        if self.family == "mosaics":
            del spec["family"]  # the mosaics keep the fingerprint they had before a second family existed
        payload = json.dumps({"spec": spec, "classes": list(self.classes), "version": 1}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:16]


def _grating(rng: np.random.Generator, size: int, angle_deg: float) -> np.ndarray:
    """A sinusoid whose wave vector points at ``angle_deg`` (jittered by ±8°), period 5–8 pixels."""
    angle = np.deg2rad(angle_deg + rng.uniform(-8, 8))
    period = rng.uniform(5.0, 8.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi)
    # Image rows grow downwards; use -y so angles are counter-clockwise as usual.
    return np.sin(2 * np.pi * (xx * np.cos(angle) - yy * np.sin(angle)) / period + phase)


def _texture_field(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A zero-mean texture of roughly unit amplitude, ``(size, size)`` float64."""
    if name.startswith("stripes_"):
        return _grating(rng, size, float(name.split("_")[1]))
    if name == "crosshatch":
        return 0.5 * (_grating(rng, size, 0.0) + _grating(rng, size, 90.0))
    if name == "gaussian_grain":
        return np.clip(smooth_noise(rng, size, 0.7), -2.5, 2.5) / 1.6
    if name == "binary_grain":
        # Same grain (correlation length) and variance as gaussian_grain, but a two-valued distribution.
        return np.sign(smooth_noise(rng, size, 0.7)) / 1.6
    if name == "coarse_grain":
        return np.clip(smooth_noise(rng, size, 3.0), -2.5, 2.5) / 1.6
    if name == "sparse_speckle":
        dots = (rng.random((size, size)) < 0.06).astype(np.float64)
        return 2.0 * (dots - dots.mean())
    if name == "faint_smooth":
        return 0.25 * np.clip(smooth_noise(rng, size, 6.0), -2.5, 2.5)
    raise KeyError(f"unknown texture class {name!r}; known: {TEXTURE_CLASSES}")


def _region_map(rng: np.random.Generator, spec: MosaicSpec) -> np.ndarray:
    size = spec.image_size
    n_regions = int(rng.integers(spec.min_regions, spec.max_regions + 1))
    seeds = rng.uniform(0, size, (n_regions, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    warp_sigma = size / 8
    yy = yy + spec.boundary_warp * smooth_noise(rng, size, warp_sigma)
    xx = xx + spec.boundary_warp * smooth_noise(rng, size, warp_sigma)
    dist2 = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
    return dist2.argmin(axis=0)


def render_mosaic(spec: MosaicSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Render sample ``index`` of ``spec``: an ``(S, S, 3)`` uint8 image and an ``(S, S)`` uint8 class mask.

    The sample depends only on ``(spec.seed, index)``, so any subset can be regenerated independently.
    ``spec.family == "dead_leaves"`` renders a dead-leaves scene instead (:mod:`sstkd.data.dead_leaves`);
    ``"layered"`` fills the same kind of regions with layered textures (:mod:`sstkd.data.layered_textures`).
    """
    rng = np.random.default_rng([spec.seed, index])
    size = spec.image_size
    if spec.family == "dead_leaves":
        return render_dead_leaves(rng, size, spec.min_regions, spec.max_regions, spec.boundary_warp,
                                  spec.sensor_noise)
    regions = _region_map(rng, spec)
    if spec.family == "layered":
        return render_layered(rng, regions, spec.sensor_noise)
    image = np.zeros((size, size, 3), dtype=np.float64)
    mask = np.zeros((size, size), dtype=np.uint8)
    for region in np.unique(regions):
        inside = regions == region
        class_id = int(rng.integers(len(TEXTURE_CLASSES)))
        texture = _texture_field(TEXTURE_CLASSES[class_id], rng, size)
        base_colour = rng.uniform(0.25, 0.75, 3)
        contrast = rng.uniform(0.18, 0.3)
        tint = 1.0 + rng.uniform(-0.2, 0.2, 3)  # the texture is not pure grey: a random chroma per region
        image[inside] = base_colour + contrast * texture[inside, None] * tint
        mask[inside] = class_id
    image += spec.sensor_noise * rng.standard_normal(image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), mask


def split_ids(spec: MosaicSpec) -> dict[str, list[str]]:
    """Sample ids per split; the split name is part of the id, so ids are unique across splits."""
    return {split: [f"{split}_{i:05d}" for i in range(int(count))] for split, count in spec.splits.items()}


GENERATED_MARKER = ".sstkd-generated"  # the generator's record (fingerprint + spec) of a folder it wrote


class ForeignDataError(ForeignFolderError):
    """The generator was asked to write into a folder that holds files it did not write."""


def _recorded_generation(root: Path) -> dict | None:
    """The generator's record of ``root`` (``{"fingerprint", "spec", ...}``), or ``None`` if it has none.

    Folders written before the marker existed carry the same record in their ``classes.json``.
    """
    for meta_file, key in ((root / GENERATED_MARKER, None), (root / "classes.json", "generator")):
        try:
            meta = json.loads(meta_file.read_text())
            record = meta[key] if key else meta
            if record.get("name") == "texture_mosaics" and "fingerprint" in record and "spec" in record:
                return record
        except (OSError, KeyError, ValueError, TypeError, AttributeError):
            continue
    return None


def _files_written_by(record: dict) -> set[str] | None:
    """Every path (relative, posix) the generator writes for the spec in ``record``; ``None`` if unreadable."""
    try:
        spec = MosaicSpec(**record["spec"])
    except (TypeError, ValueError):
        return None
    files = {"images", "masks", "splits", "classes.json", GENERATED_MARKER}
    for split, ids in split_ids(spec).items():
        files.add(f"splits/{split}.txt")
        files.update(f"{folder}/{sample_id}.png" for folder in ("images", "masks") for sample_id in ids)
    return files


def _foreign_files(root: Path) -> list[str]:
    """What under ``root`` the generator did not write, judged by the exact file list of its recorded spec
    (a user's file under a generated-looking name is still foreign if that spec did not produce it)."""
    record = _recorded_generation(root)
    expected = _files_written_by(record) if record is not None else None
    if expected is None:
        return sorted(p.name for p in root.iterdir()) or ["(unreadable generator record)"]
    return [relative for relative in sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
            if relative not in expected]


def write_texture_mosaics(
    spec: MosaicSpec, root: str | Path, progress: Callable[[int, int], None] | None = None
) -> bool:
    """Write the dataset under ``root`` unless a dataset with the same fingerprint is already there.

    The files are written into a temporary sibling folder that replaces ``root`` in one rename, so an
    interrupted run never leaves a half-written dataset behind. Returns ``True`` when it wrote.

    ``root`` is only ever replaced when it is missing, empty, or holds nothing but files this generator wrote
    there before (the exact list its recorded spec produces); anything else raises :class:`ForeignDataError`
    and nothing is touched, so a user's dataset can never be overwritten by mosaics.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ForeignDataError(f"texture mosaics: {root} is a file, not a folder; refusing to replace it")
    if root.is_dir() and any(root.iterdir()):
        foreign = _foreign_files(root)
        if foreign:
            example = ", ".join(foreign[:3]) or "no generator marker"
            raise ForeignDataError(
                f"texture mosaics: refusing to write into {root}: it holds files the generator did not write "
                f"({example}{', ...' if len(foreign) > 3 else ''}). If this is your dataset, its catalog entry "
                f"must not say `generated: true` (see README, 'Real datasets'); to regenerate the mosaics here, "
                f"remove the folder first.")
        if _recorded_generation(root)["fingerprint"] == spec.fingerprint():
            return False
    with replaced_directory(root) as staging:
        (staging / "images").mkdir()
        (staging / "masks").mkdir()
        (staging / "splits").mkdir()
        ids = split_ids(spec)
        total = sum(len(v) for v in ids.values())
        done = 0
        for split, split_id_list in ids.items():
            offset = list(spec.splits).index(split) * 1_000_000
            for i, sample_id in enumerate(split_id_list):
                image, mask = render_mosaic(spec, offset + i)
                Image.fromarray(image).save(staging / "images" / f"{sample_id}.png", optimize=False)
                Image.fromarray(mask, mode="L").save(staging / "masks" / f"{sample_id}.png", optimize=False)
                done += 1
                if progress is not None:
                    progress(done, total)
            (staging / "splits" / f"{split}.txt").write_text("\n".join(split_id_list) + "\n")
        generator = {"name": "texture_mosaics", "fingerprint": spec.fingerprint(), "spec": asdict(spec)}
        meta = {"classes": list(spec.classes), "ignore_index": IGNORE_INDEX, "generator": generator}
        if spec.family == "mosaics":
            meta |= {"structural_classes": list(STRUCTURAL_CLASSES), "statistical_classes": list(STATISTICAL_CLASSES),
                     # A horizontal mirror turns stripes_45 into stripes_135: flip augmentation would mislabel them.
                     "hflip_safe": False}
        else:
            meta["hflip_safe"] = True  # every dead-leaves and layered texture is drawn at a random orientation
        (staging / "classes.json").write_text(json.dumps(meta, indent=2) + "\n")
        (staging / GENERATED_MARKER).write_text(json.dumps(generator, indent=2) + "\n")
    return True
