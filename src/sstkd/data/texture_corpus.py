"""A generated texture-classification corpus: this project's stand-in for ImageNet pretraining.

Every published KD-for-segmentation student starts from ImageNet weights; none can be downloaded here. This corpus
gives both backbones generic low-level filters (oriented and isotropic band-pass structure, edges, blobs, lines,
lattices, shading) before they meet a segmentation dataset. Its generators are its own, not those of the texture
mosaics or the dead-leaves scenes: Gabor-filtered and spectrally shaped noise, random disks, segments and lattices,
interference patterns. Each image is one class's texture (random colour, tint, contrast, scale and phase), with,
half of the time, a smaller patch of another class inside a random ellipse (an object on a background, as in a
photograph); the label is the background's texture, which covers at least two thirds of the image.

Images are a pure function of ``(seed, index)``, so a corpus is fixed by its parameters.
"""

from __future__ import annotations

import numpy as np

from sstkd.data.noise import smooth_noise

# Bump when a generator changes what it draws: weights pretrained on an older corpus then no longer count as up to date.
CORPUS_VERSION = 1
_GABOR_ANGLES = (0, 30, 60, 90, 120, 150)
CORPUS_CLASSES = (
    *(f"gabor_{angle}" for angle in _GABOR_ANGLES),
    "bandpass_low", "bandpass_mid", "bandpass_high",
    "spectral_1", "spectral_2", "spectral_3",
    "blobs_fine", "blobs_coarse", "disks_small", "disks_large", "segments_few", "segments_many",
    "plaid", "hex_lattice", "interference", "zero_crossings", "impulses", "shading",
)


def _frequency_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    return fy, fx


def _filtered_noise(rng: np.random.Generator, size: int, response: np.ndarray) -> np.ndarray:
    field = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * response))
    return field


def _standardised(field: np.ndarray) -> np.ndarray:
    return (field - field.mean()) / (field.std() + 1e-8)


def corpus_texture(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A zero-mean, unit-variance texture ``(size, size)`` float64 of corpus class ``name``."""
    fy, fx = _frequency_grid(size)
    radius = np.hypot(fy, fx)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if name.startswith("gabor_"):
        angle = np.deg2rad(float(name.split("_")[1]) + rng.uniform(-7, 7))
        frequency = rng.uniform(0.08, 0.22)
        centre = frequency * np.array([np.sin(angle), np.cos(angle)])
        width = 0.25 * frequency
        response = (np.exp(-((fy - centre[0]) ** 2 + (fx - centre[1]) ** 2) / (2 * width**2))
                    + np.exp(-((fy + centre[0]) ** 2 + (fx + centre[1]) ** 2) / (2 * width**2)))
        return _standardised(_filtered_noise(rng, size, response))
    if name.startswith("bandpass_"):
        centre = {"low": 0.05, "mid": 0.12, "high": 0.28}[name.split("_")[1]] * rng.uniform(0.85, 1.15)
        return _standardised(_filtered_noise(rng, size, np.exp(-((radius - centre) ** 2) / (2 * (0.3 * centre) ** 2))))
    if name.startswith("spectral_"):
        slope = float(name.split("_")[1]) * rng.uniform(0.9, 1.1)
        return _standardised(_filtered_noise(rng, size, np.where(radius > 0, radius, np.inf) ** (-slope / 2)))
    if name.startswith("blobs_"):
        sigma = size * (rng.uniform(0.02, 0.035) if name == "blobs_fine" else rng.uniform(0.06, 0.1))
        field = smooth_noise(rng, size, sigma)
        return _standardised(np.tanh(4 * (field - rng.uniform(-0.3, 0.3))))
    if name.startswith("disks_"):
        low, high = (0.03, 0.06) if name == "disks_small" else (0.1, 0.18)
        field = np.zeros((size, size))
        for _ in range(int(rng.integers(6, 14) if name == "disks_large" else rng.integers(30, 60))):
            cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), size * rng.uniform(low, high)
            field[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = rng.uniform(0.5, 1.0)
        return _standardised(field)
    if name.startswith("segments_"):
        field = np.zeros((size, size))
        for _ in range(int(rng.integers(3, 6) if name == "segments_few" else rng.integers(14, 24))):
            y0, x0 = rng.uniform(0, size, 2)
            angle, length = rng.uniform(0, np.pi), size * rng.uniform(0.3, 0.9)
            dy, dx = yy - y0, xx - x0
            along = dx * np.cos(angle) + dy * np.sin(angle)
            across = -dx * np.sin(angle) + dy * np.cos(angle)
            field = np.maximum(field, np.exp(-(across**2) / 1.2) * (np.abs(along) <= length / 2))
        return _standardised(field)
    if name == "plaid":
        angles, periods = rng.uniform(0, np.pi, 2), rng.uniform(6, 14, 2)
        return _standardised(sum(np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / p + rng.uniform(0, 2 * np.pi))
                                 for a, p in zip(angles, periods)))
    if name == "hex_lattice":
        period, angle = rng.uniform(6, 11), rng.uniform(0, np.pi / 3)
        waves = [np.cos(2 * np.pi * (xx * np.cos(angle + k * np.pi / 3) + yy * np.sin(angle + k * np.pi / 3)) / period)
                 for k in range(3)]
        return _standardised(np.maximum(sum(waves), 0) ** 2)
    if name == "interference":
        sources = rng.uniform(-0.5 * size, 1.5 * size, (3, 2))
        wavelength = rng.uniform(5, 12)
        return _standardised(sum(np.cos(2 * np.pi * np.hypot(yy - sy, xx - sx) / wavelength) for sy, sx in sources))
    if name == "zero_crossings":
        field = smooth_noise(rng, size, size * rng.uniform(0.04, 0.08))
        return _standardised(np.exp(-(field**2) / 0.02))
    if name == "impulses":
        field = 0.3 * smooth_noise(rng, size, size / 4)
        spots = rng.random((size, size)) < rng.uniform(0.01, 0.04)
        return _standardised(field + np.where(spots, rng.choice([-4.0, 4.0], (size, size)), 0.0))
    if name == "shading":
        return _standardised(smooth_noise(rng, size, size * rng.uniform(0.25, 0.5)))
    raise KeyError(f"unknown corpus class {name!r}; known: {CORPUS_CLASSES}")


def render_corpus_image(seed: int, index: int, size: int) -> tuple[np.ndarray, int]:
    """Image ``index`` of the corpus: an ``(S, S, 3)`` uint8 image and its class id (``index`` modulo the classes,
    so every class has the same number of images)."""
    rng = np.random.default_rng([seed, index])
    label = index % len(CORPUS_CLASSES)

    def painted(name: str) -> np.ndarray:
        texture = corpus_texture(name, rng, size)
        colour, tint = rng.uniform(0.25, 0.75, 3), 1.0 + rng.uniform(-0.3, 0.3, 3)
        return colour + rng.uniform(0.08, 0.25) * texture[..., None] * tint

    image = painted(CORPUS_CLASSES[label])
    if rng.random() < 0.5:  # a smaller object of another class on the background
        other = CORPUS_CLASSES[(label + int(rng.integers(1, len(CORPUS_CLASSES)))) % len(CORPUS_CLASSES)]
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        cy, cx = rng.uniform(0.2 * size, 0.8 * size, 2)
        ry, rx = size * rng.uniform(0.12, 0.3, 2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        image[inside] = painted(other)[inside]
    image += 0.02 * rng.standard_normal(image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), label


def texture_corpus(seed: int, images_per_class: int, size: int, offset: int = 0) -> dict[str, np.ndarray]:
    """``{"images": (N, S, S, 3) uint8, "labels": (N,) int64}``, N = classes × ``images_per_class``, images
    ``offset`` … ``offset + N − 1`` (disjoint offsets give disjoint splits)."""
    samples = [render_corpus_image(seed, offset + index, size)
               for index in range(images_per_class * len(CORPUS_CLASSES))]
    return {"images": np.stack([s[0] for s in samples]), "labels": np.array([s[1] for s in samples], dtype=np.int64)}
