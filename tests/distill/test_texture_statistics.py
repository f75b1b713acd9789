import pytest
import torch

from sstkd.distill.texture_statistics import (
    DenoisedTextureEqualization,
    denoise_histogram,
    equalization_cdf,
    quantize_intensity,
    texture_intensity,
)


def _entropy(histogram):
    p = histogram.clamp_min(1e-12)
    return float(-(p * p.log()).sum())


def test_counts_sum_to_pixel_count_and_encoding_is_a_partition_of_unity():
    features = torch.randn(3, 16, 11, 13)
    for stats in DenoisedTextureEqualization((4, 8, 32))(features):
        counts = stats.encoding.sum(dim=2)
        torch.testing.assert_close(counts.sum(dim=1), torch.full((3,), 11 * 13.0))
        torch.testing.assert_close(stats.encoding.sum(dim=1), torch.ones(3, 11 * 13))
        torch.testing.assert_close(stats.histogram.sum(1), torch.ones(3))
        torch.testing.assert_close(stats.denoised.sum(1), torch.ones(3))
        assert stats.equalized.min() >= 0 and stats.equalized.max() <= 1


def test_constant_feature_falls_in_a_single_level_without_nan():
    stats = DenoisedTextureEqualization((8,))(torch.ones(2, 5, 6, 6))[0]
    assert torch.isfinite(stats.equalized).all() and torch.isfinite(stats.descriptors).all()
    torch.testing.assert_close(stats.histogram[:, 0], torch.ones(2))
    assert stats.histogram[:, 1:].sum() == 0


def test_levels_follow_intensity_order():
    intensity = torch.linspace(-1, 1, 100)[None]
    encoding = quantize_intensity(intensity, 10)
    level_of_pixel = encoding.argmax(dim=1)[0]
    assert (level_of_pixel.diff() >= 0).all() and level_of_pixel[0] == 0 and level_of_pixel[-1] == 9


def _distance_to_uniform(values):
    """Kolmogorov-Smirnov distance between the values' empirical CDF and the uniform CDF on [0, 1]."""
    ordered = values.sort().values
    return float((ordered - torch.linspace(0, 1, ordered.numel())).abs().max())


def test_equalisation_makes_a_skewed_histogram_flatter():
    # Intensities bunched near 0 (density ~ 1/sqrt(x)): far from uniform before, close to uniform after.
    intensity = torch.rand(1, 4000, generator=torch.Generator().manual_seed(0)) ** 2
    intensity[0, 0], intensity[0, 1] = 0.0, 1.0
    encoding = quantize_intensity(intensity, 32)
    histogram = encoding.sum(2) / encoding.shape[2]
    equalized = torch.einsum("bnp,bn->bp", encoding, equalization_cdf(histogram))
    before, after = _distance_to_uniform(intensity[0]), _distance_to_uniform(equalized[0])
    assert before > 0.2 and after < 0.4 * before, (before, after)
    equalized_histogram = quantize_intensity(equalized, 32).sum(2) / encoding.shape[2]
    assert _entropy(equalized_histogram[0]) > _entropy(histogram[0])


def test_denoising_drops_rare_levels_and_keeps_a_distribution():
    histogram = torch.tensor([[0.001, 0.5, 0.0, 0.499]])
    denoised = denoise_histogram(histogram, noise_threshold=0.01)
    torch.testing.assert_close(denoised.sum(1), torch.ones(1))
    assert denoised[0, 0] < denoised[0, 1] and denoised[0, 2] > 0  # dropped, then smoothed across levels
    all_noise = torch.full((1, 4), 0.25)
    torch.testing.assert_close(denoise_histogram(all_noise, noise_threshold=0.5), all_noise)


def test_statistics_are_pixel_permutation_invariant():
    features = torch.randn(2, 8, 9, 10)
    permutation = torch.randperm(90)
    permuted = features.flatten(2)[..., permutation].view_as(features)
    module = DenoisedTextureEqualization((8, 16))
    for a, b in zip(module(features), module(permuted)):
        torch.testing.assert_close(a.histogram, b.histogram)
        torch.testing.assert_close(a.descriptors, b.descriptors, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.equalized[:, permutation], b.equalized)  # equivariant per pixel


def test_memory_is_linear_in_levels_and_pixels():
    features = torch.randn(2, 4, 20, 30)
    stats = DenoisedTextureEqualization((32,))(features)[0]
    assert stats.encoding.numel() == 2 * 32 * 600
    assert max(t.numel() for t in stats) <= 2 * 32 * 600


def test_intensity_is_cosine_to_the_mean_feature():
    features = torch.zeros(1, 2, 1, 2)
    features[0, :, 0, 0] = torch.tensor([1.0, 0.0])
    features[0, :, 0, 1] = torch.tensor([0.0, 1.0])
    torch.testing.assert_close(texture_intensity(features), torch.full((1, 2), 2**-0.5))


def test_invalid_levels_are_rejected():
    with pytest.raises(ValueError, match="statistical.levels"):
        DenoisedTextureEqualization((1,))
