"""Properties every texture operator and both texture losses must have, whatever their implementation.

Each test is one a degenerate implementation fails: statistics that move under a perturbation of one part in a
million (the cosine-to-a-zero-vector defect of per-channel centring), that depend on activation scale, that
differ from a slow and obvious reference implementation, or whose gradients are NaN on degenerate maps.
"""

import pytest
import torch

from sstkd.distill.losses import StatisticalTextureLoss, StructuralTextureLoss
from sstkd.distill.texture_statistics import DenoisedTextureEqualization
from sstkd.models.segmenter import SegmentationOutput

C = 16
LOSSES = {"structural": StructuralTextureLoss, "statistical": StatisticalTextureLoss}


def _stage1_like(seed: int = 0, shape=(2, C, 32, 32)) -> torch.Tensor:
    """Post-ReLU features, as a backbone's stage 1 gives them."""
    return torch.relu(torch.randn(*shape, generator=torch.Generator().manual_seed(seed))) + 0.05


def _sparse_stage1_like(seed: int = 0, shape=(2, C, 32, 32)) -> torch.Tensor:
    """Post-ReLU features as they also come: exact zeros, a dead region, a dead channel, a 1e-7 channel."""
    x = torch.relu(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) - 0.5)
    x[:, :, :6, :6] = 0.0
    x[:, 1] = 0.0
    x[:, 2] = 1e-7 * x[:, 3]
    return x


FEATURES = {"dense": _stage1_like, "sparse": _sparse_stage1_like}


def _out(low_level: torch.Tensor) -> SegmentationOutput:
    return SegmentationOutput(torch.zeros(low_level.shape[0], 3, 8, 8), low_level, None, None)


def _with_identity_adapter(cls, channels: int = C):
    loss = cls(channels, channels)
    with torch.no_grad():
        loss.adapter.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
    return loss


def _degenerate_maps() -> dict[str, torch.Tensor]:
    sparse = torch.zeros(2, C, 32, 32)
    sparse[:, :3, 5, 7] = 2.0
    sparse[1, 4, 20:22, 11] = 0.5
    return {"constant": torch.full((2, C, 32, 32), 0.7), "sparse": sparse, "all_zero": torch.zeros(2, C, 32, 32)}


@pytest.mark.parametrize("kind", sorted(FEATURES))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_one_in_a_million_perturbation_does_not_change_the_loss(name, kind):
    loss = _with_identity_adapter(LOSSES[name])
    feat = FEATURES[kind]()
    value = float(loss(_out(feat * (1 + 1e-6)), _out(feat), {}).detach())
    assert value < 1e-3, f"{name}: loss {value:.4g} between a feature and itself × (1 + 1e-6)"


@pytest.mark.parametrize("kind", sorted(FEATURES))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_the_loss_is_invariant_to_a_positive_global_scale_of_either_network(name, kind):
    loss = _with_identity_adapter(LOSSES[name])
    student, teacher = FEATURES[kind](1), FEATURES[kind](0)
    reference = loss(_out(student), _out(teacher), {})
    for scale in (1e-3, 7.0, 1e3):
        torch.testing.assert_close(loss(_out(student * scale), _out(teacher), {}), reference, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(loss(_out(student), _out(teacher * scale), {}), reference, rtol=1e-4, atol=1e-5)


def test_the_statistics_the_loss_compares_are_perturbation_invariant():
    loss = _with_identity_adapter(StatisticalTextureLoss)
    feat = _stage1_like()
    # What the loss compares: the DTIEM statistics of the features as the loss prepares them.
    student_like = loss.module(loss.prepare(loss.adapter(feat * (1 + 1e-6))))
    teacher_like = loss.module(loss.prepare(feat))
    for s, t in zip(student_like, teacher_like):
        for field in ("intensity", "histogram", "denoised", "equalized", "descriptors"):
            torch.testing.assert_close(getattr(s, field), getattr(t, field), atol=1e-4, rtol=1e-4, msg=field)


def test_intensity_is_meaningful_on_the_prepared_features():
    """The per-pixel intensity must survive the loss's preparation: a 1e-6 perturbation keeps it (correlation)."""
    loss = _with_identity_adapter(StatisticalTextureLoss)
    feat = _stage1_like()
    prepared = loss.module(loss.prepare(feat))[0].intensity
    perturbed = loss.module(loss.prepare(feat * (1 + 1e-6)))[0].intensity
    correlation = torch.corrcoef(torch.stack([prepared.flatten(), perturbed.flatten()]))[0, 1]
    assert correlation > 0.9999


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("kind", ["constant", "sparse", "all_zero"])
def test_gradients_reach_the_student_stage1_finite_on_degenerate_maps(name, kind):
    torch.manual_seed(0)
    loss = LOSSES[name](C, C)
    teacher = _stage1_like()
    for student_map, teacher_map in ((_degenerate_maps()[kind], teacher), (teacher, _degenerate_maps()[kind]),
                                     (_degenerate_maps()[kind], _degenerate_maps()[kind])):
        student_map = student_map.clone().requires_grad_(True)
        value = loss(_out(student_map), _out(teacher_map), {})
        value.backward()
        assert torch.isfinite(value), f"{name} on {kind}: loss {value}"
        assert student_map.grad is not None and torch.isfinite(student_map.grad).all(), f"{name} on {kind}"
        assert all(torch.isfinite(p.grad).all() for p in loss.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_reach_the_student_stage1(name):
    loss = LOSSES[name](C, C)
    student = _stage1_like(1).requires_grad_(True)
    loss(_out(student), _out(_stage1_like(0)), {}).backward()
    assert student.grad.abs().sum() > 0


def test_dtiem_statistics_on_raw_features_are_perturbation_and_scale_invariant():
    module = DenoisedTextureEqualization((8, 16, 32))
    feat = _stage1_like()
    for other in (feat * (1 + 1e-6), feat * 1e3, feat * 1e-3):
        for s, t in zip(module(other), module(feat)):
            for field in ("intensity", "histogram", "denoised", "equalized"):
                torch.testing.assert_close(getattr(s, field), getattr(t, field), atol=1e-4, rtol=1e-4, msg=field)


def _stlnet_reference(features: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """STLNet's definitions on raw features, one pixel and one level at a time (slow and obvious).

    Returns intensity ``(HW,)``, encoding ``(N, HW)``, counts ``(N,)`` of the first image. The one departure from
    STLNet, kept on purpose (module docstring): intensities outside ``[L_0, L_{N-1}]`` belong wholly to the end level.
    """
    f = features[0].double().flatten(1)  # (C, HW)
    mean = f.mean(dim=1)
    intensity = torch.tensor([float(f[:, i] @ mean / (f[:, i].norm() * mean.norm())) for i in range(f.shape[1])],
                             dtype=torch.float64)
    low, high = float(intensity.min()), float(intensity.max())
    spacing = (high - low) / levels
    centres = [low + (2 * n + 1) / (2 * levels) * (high - low) for n in range(levels)]
    encoding = torch.zeros(levels, f.shape[1], dtype=torch.float64)
    for i, s in enumerate(intensity.tolist()):
        s = min(max(s, centres[0]), centres[-1])
        for n, level in enumerate(centres):
            encoding[n, i] = max(0.0, 1 - abs(level - s) / spacing)
    return intensity, encoding, encoding.sum(dim=1) / f.shape[1]


@pytest.mark.parametrize("levels", [4, 8])
def test_dtiem_equals_the_slow_stlnet_reference_on_raw_features(levels):
    features = _stage1_like(3, shape=(1, 6, 7, 9))
    stats = DenoisedTextureEqualization((levels,), noise_threshold=0.0)(features)[0]
    intensity, encoding, counts = _stlnet_reference(features, levels)
    torch.testing.assert_close(stats.intensity[0].double(), intensity, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stats.encoding[0].double(), encoding, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(stats.histogram[0].double(), counts, atol=1e-5, rtol=1e-5)
    # Equalisation: every pixel's value is the mid-point CDF of the levels it belongs to.
    cdf = [float(sum(stats.denoised[0, :n]) + stats.denoised[0, n] / 2) for n in range(levels)]
    expected = torch.tensor([sum(encoding[n, i].item() * cdf[n] for n in range(levels))
                             for i in range(encoding.shape[1])], dtype=torch.float64)
    torch.testing.assert_close(stats.equalized[0].double(), expected, atol=1e-4, rtol=1e-4)


def test_clip_limit_caps_the_dominant_level_and_redistributes_the_excess_evenly():
    from sstkd.distill.texture_statistics import clip_limit_histogram

    histogram = torch.tensor([[0.70, 0.20, 0.06, 0.04], [0.25, 0.25, 0.25, 0.25]])
    clipped = clip_limit_histogram(histogram, 0.5)
    torch.testing.assert_close(clipped.sum(1), torch.ones(2))
    ceiling = 0.5 * histogram.amax(1, keepdim=True)
    excess = (histogram - histogram.minimum(ceiling)).sum(1, keepdim=True)
    torch.testing.assert_close(clipped - excess / 4, histogram.minimum(ceiling))  # even redistribution
    assert ((clipped - excess / 4) <= ceiling + 1e-7).all()  # nothing above θ·max after clipping
    torch.testing.assert_close(clipped[0], torch.tensor([0.35 + 0.35 / 4, 0.2 + 0.35 / 4, 0.06 + 0.35 / 4,
                                                         0.04 + 0.35 / 4]))
    torch.testing.assert_close(clipped[1], histogram[1] * 0.5 + 0.125)  # a flat histogram stays flat


def test_clip_limit_denoising_keeps_the_dtiem_invariances():
    module = DenoisedTextureEqualization((8, 16), denoise="clip_limit")
    feat = _stage1_like()
    for s, t in zip(module(feat * (1 + 1e-6)), module(feat)):
        torch.testing.assert_close(s.equalized, t.equalized, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(s.denoised.sum(1), torch.ones(2))


def test_importance_weights_favour_texture_rich_pixels_and_count_them_more():
    from sstkd.distill.texture_statistics import texture_importance

    features = torch.ones(1, 4, 16, 16)
    features[..., :, 8:] += torch.randn(1, 4, 16, 8, generator=torch.Generator().manual_seed(0))  # textured right
    weights = texture_importance(features, 1.0).view(16, 16)
    torch.testing.assert_close(weights.mean(), torch.tensor(1.0))
    assert weights[:, 10:].mean() > 5 * weights[:, :6].mean()
    torch.testing.assert_close(texture_importance(features, 0.0), torch.ones(1, 256))
    torch.testing.assert_close(texture_importance(torch.zeros(1, 4, 8, 8), 1.0), torch.ones(1, 64))
    # Counting with weights: a level holding only heavy pixels grows.
    module = DenoisedTextureEqualization((4,))
    plain = module(features)[0].histogram
    weighted = module(features, pixel_weights=texture_importance(features, 1.0))[0].histogram
    torch.testing.assert_close(weighted.sum(), torch.tensor(1.0))
    assert not torch.allclose(plain, weighted)


def test_importance_weighted_loss_keeps_the_properties():
    loss = _with_identity_adapter(lambda s, t: StatisticalTextureLoss(s, t, importance=0.5))
    feat = _stage1_like()
    assert float(loss(_out(feat * (1 + 1e-6)), _out(feat), {}).detach()) < 1e-3
    student = _stage1_like(1).requires_grad_(True)
    loss(_out(student), _out(feat), {}).backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_structural_border_margin_ignores_the_outer_pixels():
    loss = _with_identity_adapter(lambda s, t: StructuralTextureLoss(s, t, levels=2, border=2))
    teacher = _stage1_like(0)
    student = teacher.clone()
    student[..., :2, :] = 50.0  # a padding artefact confined to the outer 2 rows
    student[..., :, -2:] = -3.0
    assert float(loss(_out(student), _out(teacher), {}).detach()) < 1e-5
    without = _with_identity_adapter(lambda s, t: StructuralTextureLoss(s, t, levels=2, border=0))
    assert float(without(_out(student), _out(teacher), {}).detach()) > 0.1
    student[..., 2, 5] += 5.0  # inside the margin's interior: seen
    assert float(loss(_out(student), _out(teacher), {}).detach()) > 1e-3
    with pytest.raises(ValueError, match="structural.border"):
        StructuralTextureLoss(C, C, border=16)(_out(teacher), _out(teacher), {})


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_the_loss_works_with_an_empty_batch_and_different_channel_counts(name):
    loss = LOSSES[name](8, C)
    student = torch.relu(torch.randn(2, 8, 24, 24)).requires_grad_(True)
    value = loss(_out(student), _out(_stage1_like()[..., :24, :24]), {})
    value.backward()
    assert torch.isfinite(value) and student.grad.abs().sum() > 0
    assert isinstance(loss.adapter, torch.nn.Conv2d) and loss.adapter.bias is None
    assert tuple(loss.adapter.weight.shape) == (C, 8, 1, 1)
