"""Statistical texture: the Denoised Texture Intensity Equalization Module (DTIEM).

Built on STLNet's quantisation and counting operators (Zhu et al., CVPR 2021), re-derived here:

1. **intensity** ``S_i = cos(f_i, mean_j f_j)``: how much pixel ``i``'s feature agrees with the image's average
   feature, a scalar texture intensity per pixel, independent of the channel count;
2. **quantisation** into ``N`` levels spread evenly over ``[min S, max S]`` of each image, with the normalised
   triangular kernel ``E_{i,n} = max(0, 1 - |u_i - n|)`` where ``u_i = (S_i - min) / (max - min) · N - ½`` is the
   pixel's position in level units, clamped to ``[0, N-1]``. This is STLNet's encoding with the division by the
   level spacing Δ that its code omits; the clamp makes each pixel's weights sum to exactly 1 (so counts sum to
   the pixel count), and an epsilon on ``max - min`` puts a constant map in level 0 instead of giving NaN;
3. **counting**: the per-image histogram ``C_n = Σ_i E_{i,n} / HW``;
4. **denoising** (our reading of the paper's "denoised"): levels holding less than ``noise_threshold`` of the
   pixels are treated as noise and dropped, the rest is smoothed across neighbouring levels by a [¼ ½ ¼] kernel
   and renormalised;
5. **equalisation**: each level is mapped through the cumulative denoised histogram (the mid-point CDF, as in
   histogram equalisation), giving every pixel an **equalised intensity** ``Ŝ_i = Σ_n E_{i,n} · CDF_n`` in
   ``[0, 1]``: its rank-normalised texture intensity, comparable between two networks whose raw intensities live
   on different scales;
6. **level descriptors** ``D_n = Σ_i E_{i,n} f_i / Σ_i E_{i,n}``: the mean feature of each intensity level.

"Heuristic iterative quantisation" is read as running steps 2–6 at several ``N`` (coarse to fine, default 8, 16,
32). The module has no parameters and is applied identically to teacher and student, so training cannot move the
teacher's statistics. Memory is ``O(B · N · H · W)`` for the encoding.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class TextureStatistics(NamedTuple):
    """DTIEM output at one quantisation granularity ``N``.

    intensity ``(B, HW)`` raw cosine intensity; encoding ``(B, N, HW)``; histogram ``(B, N)`` (sums to 1);
    denoised ``(B, N)`` (sums to 1); cdf ``(B, N)``; equalized ``(B, HW)`` in [0, 1]; descriptors ``(B, N, C)``.
    """

    intensity: torch.Tensor
    encoding: torch.Tensor
    histogram: torch.Tensor
    denoised: torch.Tensor
    cdf: torch.Tensor
    equalized: torch.Tensor
    descriptors: torch.Tensor


def texture_intensity(features: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, HW)`` cosine similarity of each pixel's feature to the global average feature."""
    flat = features.float().flatten(2)  # (B, C, HW)
    mean = flat.mean(dim=2, keepdim=True)
    return F.cosine_similarity(flat, mean.expand_as(flat), dim=1, eps=eps)


def quantize_intensity(intensity: torch.Tensor, levels: int, eps: float = 1e-6) -> torch.Tensor:
    """Soft assignment ``(B, N, HW)`` of each pixel's intensity to ``levels`` evenly spaced levels (sums to 1)."""
    low = intensity.amin(dim=1, keepdim=True)
    high = intensity.amax(dim=1, keepdim=True)
    position = ((intensity - low) / (high - low + eps) * levels - 0.5).clamp(0, levels - 1)  # (B, HW)
    centres = torch.arange(levels, device=intensity.device, dtype=intensity.dtype).view(1, levels, 1)
    return (1 - (position.unsqueeze(1) - centres).abs()).clamp_min(0)


def denoise_histogram(histogram: torch.Tensor, noise_threshold: float) -> torch.Tensor:
    """Drop levels below ``noise_threshold`` (as a fraction of pixels), smooth across levels, renormalise."""
    keep = (histogram >= noise_threshold).to(histogram.dtype)
    kept = histogram * keep
    kernel = histogram.new_tensor([0.25, 0.5, 0.25]).view(1, 1, 3)
    smoothed = F.conv1d(F.pad(kept.unsqueeze(1), (1, 1), mode="replicate"), kernel).squeeze(1)
    total = smoothed.sum(dim=1, keepdim=True)
    # An image whose every level is below the threshold keeps its raw histogram rather than becoming empty.
    return torch.where(total > 0, smoothed / total.clamp_min(1e-12), histogram)


def equalization_cdf(histogram: torch.Tensor) -> torch.Tensor:
    """Mid-point cumulative histogram ``CDF_n = Σ_{m<n} C_m + C_n / 2`` ``(B, N)``, values in [0, 1]."""
    return histogram.cumsum(dim=1) - histogram / 2


class DenoisedTextureEqualization(nn.Module):
    """DTIEM: ``forward(features (B, C, H, W), encoding_from=None)`` → one :class:`TextureStatistics` per ``N``.

    ``encoding_from`` (a previous output for the same image) makes the level descriptors use *that* encoding,
    so a student's features can be described on the teacher's intensity levels.
    """

    def __init__(self, quantization_levels=(8, 16, 32), noise_threshold: float = 0.005):
        super().__init__()
        if not quantization_levels or min(quantization_levels) < 2:
            raise ValueError(f"texture.statistical.levels must be integers >= 2, got {quantization_levels}")
        self.quantization_levels = tuple(int(n) for n in quantization_levels)
        self.noise_threshold = noise_threshold

    def forward(
        self, features: torch.Tensor, encoding_from: list[TextureStatistics] | None = None
    ) -> list[TextureStatistics]:
        features = features.float()
        pixels = features.shape[-2] * features.shape[-1]
        intensity = texture_intensity(features)
        flat = features.flatten(2)  # (B, C, HW)
        results = []
        for index, levels in enumerate(self.quantization_levels):
            encoding = quantize_intensity(intensity, levels)
            histogram = encoding.sum(dim=2) / pixels
            denoised = denoise_histogram(histogram, self.noise_threshold)
            cdf = equalization_cdf(denoised)
            equalized = torch.einsum("bnp,bn->bp", encoding, cdf)
            describe_with = encoding if encoding_from is None else encoding_from[index].encoding
            weights = describe_with / describe_with.sum(dim=2, keepdim=True).clamp_min(1e-6)
            descriptors = torch.einsum("bnp,bcp->bnc", weights, flat)
            results.append(TextureStatistics(intensity, encoding, histogram, denoised, cdf, equalized, descriptors))
        return results
