"""Random fields shared by the built-in dataset generators."""

from __future__ import annotations

import numpy as np


def smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """White noise low-passed by a Gaussian of width ``sigma`` pixels (via FFT), scaled to unit std."""
    noise = rng.standard_normal((size, size))
    freqs = np.fft.fftfreq(size)
    radius2 = freqs[:, None] ** 2 + freqs[None, :] ** 2
    smoothed = np.real(np.fft.ifft2(np.fft.fft2(noise) * np.exp(-2 * (np.pi * sigma) ** 2 * radius2)))
    return (smoothed - smoothed.mean()) / (smoothed.std() + 1e-8)
