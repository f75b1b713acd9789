"""Statistical texture: the Denoised Texture Intensity Equalization Module (DTIEM).

Built on STLNet's quantisation and counting operators (Zhu et al., CVPR 2021), re-derived here:

0. **preparation** (done by the caller, :func:`rms_scale_channels`): each channel is divided by its spatial RMS,
   *not centred*. Centring per channel would make the image's mean feature the zero vector, and the cosine of
   step 1 would measure rounding noise (a version of this project did that: the intensity maps of ``x`` and
   ``x·(1 + 1e-6)`` correlated at 0.16). RMS scaling keeps the mean feature, makes every channel count alike and
   the statistics independent of activation scale;
1. **intensity** ``S_i = cos(f_i, mean_j f_j)``: how much pixel ``i``'s feature agrees with the image's average
   feature, a scalar texture intensity per pixel, independent of the channel count;
2. **quantisation** into ``N`` levels ``L_n = min S + (2n+1)/(2N)·(max S − min S)`` with the normalised
   triangular kernel ``E_{i,n} = max(0, 1 − |L_n − S_i| / Δ)``, ``Δ = (max − min)/N``, computed as
   ``max(0, 1 - |u_i - n|)`` where ``u_i = (S_i - min) / Δ - ½`` is the pixel's position in level units, clamped to
   ``[0, N-1]``. This is STLNet's encoding with the division by Δ that its code omits; the clamp makes each
   pixel's weights sum to exactly 1 (so counts sum to the pixel count), and an epsilon on ``max - min`` puts a
   constant map in level 0 instead of giving NaN;
3. **counting**: the per-image histogram ``C_n = Σ_i w_i E_{i,n} / Σ_i w_i``, with pixel weights ``w`` (all 1
   unless importance weighting is on, see below);
4. **denoising**, two readings of the paper's "intensity-limited denoising":
   ``threshold`` — levels holding less than ``noise_threshold`` of the pixels are dropped, the rest smoothed
   across neighbouring levels by a [¼ ½ ¼] kernel and renormalised; ``clip_limit`` — CLAHE's clip limit, as the
   public follow-up SSATKD implements it: counts above ``θ·max C`` are clipped and the excess is spread evenly
   over all levels (θ = 0.5), which limits how much a dominant (flat, noisy) level stretches the equalisation;
5. **equalisation**: each level is mapped through the cumulative denoised histogram (the mid-point CDF, as in
   histogram equalisation), giving every pixel an **equalised intensity** ``Ŝ_i = Σ_n E_{i,n} · CDF_n`` in
   ``[0, 1]``: its rank-normalised texture intensity, comparable between two networks whose raw intensities live
   on different scales;
6. **level descriptors** ``D_n = Σ_i E_{i,n} f_i / Σ_i E_{i,n}``: the mean feature of each intensity level.

"Heuristic iterative quantisation" is read as running steps 2–6 at several ``N`` (coarse to fine, default 8, 16,
32). The paper's "anchor-based adaptive importance sampler" is read as pixel weights from the teacher's local
texture energy (:func:`texture_importance`): texture-rich pixels count more in the histograms and in the loss.
The module has no parameters and is applied identically to teacher and student, so training cannot move the
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


# Below this fraction of the sample's overall RMS, a channel (or sample) is treated as flat/dead: dividing by its
# own tiny magnitude would turn rounding noise into signal.
_RELATIVE_FLOOR = 1e-3
_ABSOLUTE_FLOOR = 1e-8


def rms_scale_channels(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` → each channel divided by its spatial RMS (no centring): scale-free, mean feature kept.

    Channels weaker than ``1e-3`` × the sample's RMS are damped rather than blown up, and an all-zero map stays
    zero with finite gradients.
    """
    x = x.float()
    # The tiny addend keeps sqrt's gradient finite on an all-zero channel; it is far below any real activation.
    channel_rms = (x.square().mean(dim=(-2, -1), keepdim=True) + 1e-30).sqrt()
    sample_rms = x.detach().square().mean(dim=(-3, -2, -1), keepdim=True).sqrt()
    return x / (channel_rms + _RELATIVE_FLOOR * sample_rms + _ABSOLUTE_FLOOR)


def standardize_jointly(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` → standardised over C·H·W at once: one mean and one std per sample (the alternative to
    :func:`rms_scale_channels`; the mean feature survives because channels keep their own offsets)."""
    x = x.float()
    mean = x.mean(dim=(-3, -2, -1), keepdim=True)
    std = x.std(dim=(-3, -2, -1), keepdim=True, unbiased=False)
    return (x - mean) / (std + _RELATIVE_FLOOR * mean.detach().abs() + _ABSOLUTE_FLOOR)


FEATURE_PREPARATIONS = {"rms": rms_scale_channels, "joint": standardize_jointly}


def texture_intensity(features: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, HW)`` cosine similarity of each pixel's feature to the global average feature.

    The norms are floored relative to the image's mean feature, so a pixel whose feature is (numerically) zero has
    intensity 0 at any activation scale.
    """
    flat = features.float().flatten(2)  # (B, C, HW)
    mean = flat.mean(dim=2, keepdim=True)
    floor = eps * mean.detach().norm(dim=1, keepdim=True) + 1e-12  # (B, 1, 1)
    dot = (flat * mean).sum(dim=1)
    norms = flat.norm(dim=1).clamp_min(floor.squeeze(1)) * mean.norm(dim=1).clamp_min(floor.squeeze(1))
    return dot / norms


def texture_importance(features: torch.Tensor, strength: float, eps: float = 1e-12) -> torch.Tensor:
    """Pixel weights ``(B, HW)`` with mean 1 per image: ``1 - strength + strength · r_i / mean(r)``.

    ``r_i`` is pixel ``i``'s local texture energy, ``Σ_c (f_ci - mean of f_c over its 3×3 neighbourhood)²``
    (a high-pass energy; replicate padding so the image border is not an edge). ``strength = 0`` gives uniform
    weights; ``1`` makes a pixel's weight proportional to its texture energy.
    """
    features = features.float()
    padded = F.pad(features, (1, 1, 1, 1), mode="replicate")
    local_mean = F.avg_pool2d(padded, 3, stride=1)
    richness = (features - local_mean).square().sum(dim=1).flatten(1)  # (B, HW)
    relative = richness / (richness.mean(dim=1, keepdim=True) + eps)
    relative = torch.where(richness.mean(dim=1, keepdim=True) > eps, relative, torch.ones_like(relative))
    return (1 - strength) + strength * relative


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


def clip_limit_histogram(histogram: torch.Tensor, clip_limit: float) -> torch.Tensor:
    """CLAHE's clip limit on ``(B, N)`` histograms: counts above ``clip_limit · max`` are cut and the excess is
    spread evenly over all ``N`` levels (one pass, as CLAHE and SSATKD do). Sums are preserved."""
    ceiling = clip_limit * histogram.amax(dim=1, keepdim=True)
    clipped = torch.minimum(histogram, ceiling)
    excess = (histogram - clipped).sum(dim=1, keepdim=True)
    return clipped + excess / histogram.shape[1]


def equalization_cdf(histogram: torch.Tensor) -> torch.Tensor:
    """Mid-point cumulative histogram ``CDF_n = Σ_{m<n} C_m + C_n / 2`` ``(B, N)``, values in [0, 1]."""
    return histogram.cumsum(dim=1) - histogram / 2


DENOISERS = ("threshold", "clip_limit")


class DenoisedTextureEqualization(nn.Module):
    """DTIEM: ``forward(features (B, C, H, W), encoding_from=None, pixel_weights=None)`` → one
    :class:`TextureStatistics` per ``N``.

    ``encoding_from`` (a previous output for the same image) makes the level descriptors use *that* encoding,
    so a student's features can be described on the teacher's intensity levels. ``pixel_weights`` ``(B, HW)``
    weigh each pixel in the counting (importance weighting); ``None`` counts every pixel once.
    """

    def __init__(self, quantization_levels=(8, 16, 32), noise_threshold: float = 0.005, denoise: str = "threshold",
                 clip_limit: float = 0.5):
        super().__init__()
        if not quantization_levels or min(quantization_levels) < 2:
            raise ValueError(f"texture.statistical.levels must be integers >= 2, got {quantization_levels}")
        if denoise not in DENOISERS:
            raise ValueError(f"statistical.denoise must be one of {DENOISERS}, got {denoise!r}")
        if not 0 < clip_limit <= 1:
            raise ValueError(f"statistical.clip_limit must be in (0, 1], got {clip_limit}")
        self.quantization_levels = tuple(int(n) for n in quantization_levels)
        self.noise_threshold, self.denoise, self.clip_limit = noise_threshold, denoise, clip_limit

    def denoised(self, histogram: torch.Tensor) -> torch.Tensor:
        if self.denoise == "clip_limit":
            return clip_limit_histogram(histogram, self.clip_limit)
        return denoise_histogram(histogram, self.noise_threshold)

    def forward(
        self, features: torch.Tensor, encoding_from: list[TextureStatistics] | None = None,
        pixel_weights: torch.Tensor | None = None,
    ) -> list[TextureStatistics]:
        features = features.float()
        intensity = texture_intensity(features)
        flat = features.flatten(2)  # (B, C, HW)
        if pixel_weights is None:
            pixel_weights = torch.ones_like(intensity)
        pixel_weights = pixel_weights / pixel_weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
        results = []
        for index, levels in enumerate(self.quantization_levels):
            encoding = quantize_intensity(intensity, levels)
            histogram = torch.einsum("bnp,bp->bn", encoding, pixel_weights)
            denoised = self.denoised(histogram)
            cdf = equalization_cdf(denoised)
            equalized = torch.einsum("bnp,bn->bp", encoding, cdf)
            describe_with = encoding if encoding_from is None else encoding_from[index].encoding
            weights = describe_with / describe_with.sum(dim=2, keepdim=True).clamp_min(1e-6)
            descriptors = torch.einsum("bnp,bcp->bnc", weights, flat)
            results.append(TextureStatistics(intensity, encoding, histogram, denoised, cdf, equalized, descriptors))
        return results
