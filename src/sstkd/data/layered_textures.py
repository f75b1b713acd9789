"""Layered textures: a built-in family whose classes are textures *of* textures, so that depth and width matter.

On the mosaics and the dead-leaves scenes, pretrained networks of very different capacity (a PSPNet-ResNet10 and a
DeepLabV3-ResNet50) converge to within two points of each other (benchmarks/README.md, issue 19 §4): each class is
told apart by one local filter response, which a small network learns as well as a large one. Here a class is a
pair (micro texture, layout): a fine texture (period 3.5–5.5 px) whose *amplitude* is switched between full and
faint by a coarse binary layout (cells of 9–13 px, bands of 18–26 px, irregular blobs, or no switching). The
layout changes only the local variance of the fine texture, never the mean intensity, so it is invisible to one
linear filter: telling ``grain_checker`` from ``grain_blobs`` takes a nonlinearity that extracts the fine
texture's energy, then a second spatial analysis of that energy map over two or three macro periods — a
hierarchy of features over a receptive field of 30–60 px, which is what a deeper, wider backbone adds.

Everything that is not the class is random per region: base colour, tint, contrast, the faint amplitude, both
orientations and both scales within the class's range. Every texture and layout is drawn at a random orientation,
so a mirror image keeps its class: flips are safe.

The family, its classes and its parameters are fixed from teacher and baseline runs only (capacity has to matter:
a teacher well above its converged student), never from a comparison of distillation methods.
"""

from __future__ import annotations

import numpy as np

from sstkd.data.noise import smooth_noise

MICRO_TEXTURES = ("grating", "crosshatch", "grain", "speckle")
LAYOUTS = ("plain", "checker", "bands", "blobs")
LAYERED_CLASSES = tuple(f"{micro}_{layout}" for micro in MICRO_TEXTURES for layout in LAYOUTS)


def _rotated_grid(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle)


def _standardised(field: np.ndarray) -> np.ndarray:
    return (field - field.mean()) / (field.std() + 1e-8)


def micro_texture(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A fine, zero-mean, unit-variance texture ``(size, size)`` float64."""
    u, v = _rotated_grid(rng, size)
    phase = rng.uniform(0, 2 * np.pi, 2)
    if name == "grating":
        return _standardised(np.sin(2 * np.pi * u / rng.uniform(3.5, 5.0) + phase[0]))
    if name == "crosshatch":
        return _standardised(np.sin(2 * np.pi * u / rng.uniform(4.0, 5.5) + phase[0])
                             + np.sin(2 * np.pi * v / rng.uniform(4.0, 5.5) + phase[1]))
    if name == "grain":
        return _standardised(np.clip(smooth_noise(rng, size, 0.8), -2.5, 2.5))
    if name == "speckle":
        return _standardised((rng.random((size, size)) < 0.1).astype(np.float64))
    raise KeyError(f"unknown micro texture {name!r}; known: {MICRO_TEXTURES}")


def layout(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A coarse boolean ``(size, size)`` layout: where the fine texture is at full amplitude."""
    if name == "plain":
        return np.ones((size, size), dtype=bool)
    u, v = _rotated_grid(rng, size)
    if name == "checker":
        cell = rng.uniform(9.0, 13.0)
        return (np.floor(u / cell) + np.floor(v / cell)) % 2 == 0
    if name == "bands":
        return np.sin(2 * np.pi * u / rng.uniform(18.0, 26.0) + rng.uniform(0, 2 * np.pi)) > 0
    if name == "blobs":
        return smooth_noise(rng, size, rng.uniform(2.5, 3.5)) > 0
    raise KeyError(f"unknown layout {name!r}; known: {LAYOUTS}")


def layered_texture(class_id: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Class ``class_id``'s texture: the micro texture at amplitude 1 on its layout, faint (0.15–0.3) elsewhere."""
    micro, layout_name = LAYERED_CLASSES[class_id].split("_")
    amplitude = np.where(layout(layout_name, rng, size), 1.0, rng.uniform(0.15, 0.3))
    return micro_texture(micro, rng, size) * amplitude


def render_layered(rng: np.random.Generator, regions: np.ndarray, sensor_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """One image over a region map ``(S, S)`` of region ids: an ``(S, S, 3)`` uint8 image and its class mask."""
    size = regions.shape[0]
    image = np.zeros((size, size, 3), dtype=np.float64)
    mask = np.zeros((size, size), dtype=np.uint8)
    for region in np.unique(regions):
        inside = regions == region
        class_id = int(rng.integers(len(LAYERED_CLASSES)))
        texture = layered_texture(class_id, rng, size)
        base_colour = rng.uniform(0.3, 0.7, 3)
        contrast = rng.uniform(0.18, 0.3)
        tint = 1.0 + rng.uniform(-0.2, 0.2, 3)
        image[inside] = base_colour + contrast * texture[inside, None] * tint
        mask[inside] = class_id
    image += sensor_noise * rng.standard_normal(image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), mask
