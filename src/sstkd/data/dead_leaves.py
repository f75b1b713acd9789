"""Dead-leaves texture scenes: the second built-in dataset, of another family than the Voronoi mosaics.

Where the mosaics tile the plane with Voronoi cells of gratings and grains at moderate contrast, these scenes
are a *dead-leaves* model (Matheron; Lee, Mumford & Huang 2001): shapes — ellipses, rotated rectangles and
smooth random blobs — fall one over another and occlude what lies below, so regions are nested, overlapping and
of very different sizes, with straight, elliptic and irregular boundaries. Each shape carries one of eight
textures that neither grating nor grain describes — periodic lattices, curved and warped stripes, cellular and
1/f noise — at **low contrast** (a third to two thirds of the mosaics'). Every texture is drawn at a random
orientation (and scale within its range), so a mirror image is still the same class: flips are safe here.

The dataset, its classes and its parameters were fixed before any method was compared on it, and are not to be
changed to favour one: a second dataset exists so that the default recipe and the methods are not judged on the
mosaics alone.
"""

from __future__ import annotations

import numpy as np

from sstkd.data.noise import smooth_noise

LEAF_CLASSES = ("checkerboard", "dot_lattice", "rings", "herringbone", "bricks", "marble", "cellular", "pink_noise")


def _rotated_grid(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by a random angle: textures have no preferred orientation."""
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle)


def _triangle(x: np.ndarray) -> np.ndarray:
    """A triangle wave of period 1 in [-1, 1]."""
    return 2 * np.abs(2 * (x - np.floor(x + 0.5))) - 1


def _standardised(field: np.ndarray) -> np.ndarray:
    return (field - field.mean()) / (field.std() + 1e-8)


def leaf_texture(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A zero-mean, unit-variance texture ``(size, size)`` float64 of class ``name``."""
    u, v = _rotated_grid(rng, size)
    if name == "checkerboard":
        period = rng.uniform(6, 10)
        return _standardised(np.sign(np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)))
    if name == "dot_lattice":
        period, radius = rng.uniform(5, 8), rng.uniform(0.15, 0.25)
        du, dv = u / period - np.floor(u / period) - 0.5, v / period - np.floor(v / period) - 0.5
        return _standardised(np.exp(-(du**2 + dv**2) / (2 * radius**2)))
    if name == "rings":
        centre = rng.uniform(-size, 2 * size, 2)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        return _standardised(np.sin(2 * np.pi * np.hypot(yy - centre[0], xx - centre[1]) / rng.uniform(5, 9)))
    if name == "herringbone":
        period, zig = rng.uniform(5, 8), rng.uniform(6, 10)
        return _standardised(_triangle((u + 0.6 * zig * _triangle(v / zig)) / period))
    if name == "bricks":
        height = rng.uniform(6, 9)
        row = np.floor(v / height)
        along = u / (2 * height) + 0.5 * (row % 2)
        mortar = (np.abs(v / height - row - 0.5) > 0.38) | (np.abs(along - np.floor(along) - 0.5) > 0.44)
        return _standardised(np.where(mortar, -1.0, 1.0))
    if name == "marble":
        turbulence = smooth_noise(rng, size, rng.uniform(3, 6))
        return _standardised(np.sin(2 * np.pi * u / rng.uniform(10, 16) + 2.5 * turbulence))
    if name == "cellular":
        count = max(4, int(size * size / rng.uniform(60, 120)))
        points = rng.uniform(0, size, (count, 2))
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        nearest = np.full((size, size), np.inf)
        for py, px in points:  # Worley noise F1: distance to the nearest feature point
            nearest = np.minimum(nearest, (yy - py) ** 2 + (xx - px) ** 2)
        return _standardised(np.sqrt(nearest))
    if name == "pink_noise":
        spectrum = np.fft.fft2(rng.standard_normal((size, size)))
        radius = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
        radius[0, 0] = np.inf
        return _standardised(np.real(np.fft.ifft2(spectrum / radius)))
    raise KeyError(f"unknown dead-leaves texture class {name!r}; known: {LEAF_CLASSES}")


def _leaf_shape(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A boolean mask of one falling leaf: an ellipse, a rotated rectangle or a smooth random blob."""
    centre = rng.uniform(-0.1 * size, 1.1 * size, 2)
    extent = size * rng.uniform(0.15, 0.45, 2)
    angle = rng.uniform(0, np.pi)
    dy, dx = yy - centre[0], xx - centre[1]
    a = (dx * np.cos(angle) + dy * np.sin(angle)) / extent[0]
    b = (-dx * np.sin(angle) + dy * np.cos(angle)) / extent[1]
    kind = rng.integers(3)
    if kind == 0:
        return a**2 + b**2 <= 1
    if kind == 1:
        return (np.abs(a) <= 1) & (np.abs(b) <= 1)
    return a**2 + b**2 + 0.6 * smooth_noise(rng, size, size / 10) <= 1


def render_dead_leaves(rng: np.random.Generator, size: int, min_leaves: int, max_leaves: int,
                       boundary_warp: float, sensor_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """One scene: an ``(S, S, 3)`` uint8 image and an ``(S, S)`` uint8 class mask."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    yy = yy + 0.5 * boundary_warp * smooth_noise(rng, size, size / 8)
    xx = xx + 0.5 * boundary_warp * smooth_noise(rng, size, size / 8)
    image = np.zeros((size, size, 3), dtype=np.float64)
    mask = np.zeros((size, size), dtype=np.uint8)
    leaves = [np.ones((size, size), dtype=bool)]  # the ground: the first leaf covers everything
    leaves += [_leaf_shape(rng, size, yy, xx) for _ in range(int(rng.integers(min_leaves, max_leaves + 1)))]
    for leaf in leaves:
        if not leaf.any():
            continue
        class_id = int(rng.integers(len(LEAF_CLASSES)))
        texture = leaf_texture(LEAF_CLASSES[class_id], rng, size)
        base_colour = rng.uniform(0.3, 0.7, 3)
        contrast = rng.uniform(0.06, 0.12)  # the mosaics use 0.18-0.3 with textures of amplitude ~1
        tint = 1.0 + rng.uniform(-0.2, 0.2, 3)
        image[leaf] = base_colour + contrast * texture[leaf, None] * tint
        mask[leaf] = class_id
    image += sensor_noise * rng.standard_normal(image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), mask
