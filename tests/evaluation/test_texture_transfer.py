import numpy as np
import pytest
import torch

from sstkd.evaluation.texture_transfer import (
    TextureTransferConfig,
    directional_energy_profile,
    labels_at_feature_grid,
    leading_components,
    linear_cka,
    linear_probe,
    stage1_features,
    texture_transfer,
)
from sstkd.models.segmenter import build_network


def test_cka_is_one_for_identical_and_invariant_to_orthogonal_maps_and_isotropic_scale():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(500, 12, generator=generator)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-9)
    rotation, _ = torch.linalg.qr(torch.randn(12, 12, generator=generator))
    assert linear_cka(x, 3.5 * x @ rotation) == pytest.approx(1.0, abs=1e-6)
    y = torch.randn(500, 7, generator=generator)  # another width, unrelated
    assert linear_cka(x, y) < 0.2
    assert linear_cka(x, y) == pytest.approx(linear_cka(-2 * x @ rotation, y), abs=1e-6)


def test_probe_learns_a_linearly_separable_labelling_well_above_chance():
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn(4, 16, generator=generator)

    def sample(n):
        labels = torch.randint(0, 4, (n,), generator=generator)
        return directions[labels] * 3 + torch.randn(n, 16, generator=generator), labels

    (train_x, train_y), (test_x, test_y) = sample(800), sample(400)
    scores = linear_probe(train_x, train_y, test_x, test_y, num_classes=4, steps=30)
    assert scores["accuracy"] > 0.9 and scores["miou"] > 0.8  # chance is 0.25
    noise = linear_probe(torch.randn(800, 16, generator=generator), train_y, test_x, test_y, 4, steps=30)
    assert noise["accuracy"] < 0.45


def test_directional_profile_is_a_distribution_and_finds_the_orientation():
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    vertical_stripes = torch.sin(2 * torch.pi * 0.25 * x).expand(2, 3, 32, 32)
    profile = directional_energy_profile(vertical_stripes, levels=2, directions=8, border=0)
    assert profile.shape == (2, 8)
    torch.testing.assert_close(profile.sum(), torch.tensor(1.0))
    assert profile[:, 0].sum() > 0.95  # wave vector along x: direction 0
    scaled = directional_energy_profile(7 * vertical_stripes, levels=2, directions=8, border=0)
    torch.testing.assert_close(scaled, profile)


def test_labels_are_read_at_the_centre_of_each_feature_cell():
    masks = np.arange(64, dtype=np.uint8).reshape(1, 8, 8)
    labels = labels_at_feature_grid(masks, (2, 2))
    assert labels.tolist() == [[[masks[0, 2, 2], masks[0, 2, 6]], [masks[0, 6, 2], masks[0, 6, 6]]]]


def test_the_teacher_is_its_own_reference_and_a_student_is_compared_on_every_measure():
    torch.manual_seed(0)
    # A bottleneck teacher: 256 stage-1 channels against the student's 64, as in the paper's pairs.
    teacher = build_network({"head": "deeplabv3", "backbone": "resnet50", "head_channels": 8}, 3)
    student = build_network({"head": "pspnet", "backbone": "resnet10", "head_channels": 8}, 3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 48, 48, 3), dtype=np.uint8)
    masks = rng.integers(0, 3, (6, 48, 48)).astype(np.uint8)
    masks[:, :4] = 255
    normalization = {"mean": [0.5] * 3, "std": [0.25] * 3}
    features = {name: {"train": stage1_features(net, images[:4], normalization),
                       "test": stage1_features(net, images[4:], normalization)}
                for name, net in (("teacher", teacher), ("student", student))}
    assert features["teacher"]["test"].shape == (2, 256, 12, 12) and features["student"]["test"].shape[1] == 64
    config = TextureTransferConfig(probe_pixels=200, cka_pixels=100, probe_steps=5, quantization_levels=[4, 8])
    results = texture_transfer(features, masks[:4], masks[4:], 3, config)
    reference = results["teacher"]
    assert reference["profile_l1"] == 0 and reference["intensity_l1"] == 0 and reference["histogram_w1"] == 0
    assert reference["cka"] == pytest.approx(1.0)
    other = results["student"]
    assert 0 < other["profile_l1"] <= 2 and 0 < other["intensity_l1"] <= 1 and 0 < other["cka"] < 1
    assert set(other["per_quantization"]) == {"4", "8"}
    assert 0 <= other["probe_accuracy"] <= 1 and 0 <= other["probe_miou"] <= 1
    assert reference["channels"] == 256 and other["channels"] == 64
    # the width-matched probe: the student is already at the narrowest width, the teacher is narrowed to it
    assert reference["probe_width"] == other["probe_width"] == 64
    assert other["probe_accuracy_at_width"] == other["probe_accuracy"]
    assert 0 <= reference["probe_accuracy_at_width"] <= 1


def test_leading_components_keep_the_most_variance_and_lose_nothing_of_a_low_rank_feature():
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(500, 4, generator=generator) * torch.tensor([5.0, 3.0, 2.0, 1.0])
    wide = latent @ torch.randn(4, 32, generator=generator)  # 32 channels, rank 4
    train, test = leading_components(wide[:400], wide[400:], 4)
    assert train.shape == (400, 4) and test.shape == (100, 4)
    covariance = torch.cov(train.T)
    variances = covariance.diagonal()
    assert (variances[:-1] >= variances[1:]).all()  # ordered by the variance they keep
    assert torch.allclose(covariance - torch.diag(variances), torch.zeros(4, 4), atol=1e-3 * variances[0])
    # the test pixels go through the training pixels' standardisation and basis, never their own
    shifted = wide[400:] * 3 + 7
    _, projected = leading_components(wide[:400], shifted, 4)
    mean, std = wide[:400].mean(dim=0), wide[:400].std(dim=0)
    expected = ((shifted - mean) / std) @ torch.linalg.pinv((wide[:400] - mean) / std) @ train
    assert torch.allclose(projected, expected, atol=1e-2 * projected.abs().max())
    # rank 4: four components hold all of it, so a probe on them sees what it saw on all 32 channels
    labels = (latent[:, 0] + latent[:, 1] > 0).long()
    full = linear_probe(wide[:400], labels[:400], wide[400:], labels[400:], 2, steps=40)
    narrowed = linear_probe(train, labels[:400], test, labels[400:], 2, steps=40)
    assert narrowed["accuracy"] == pytest.approx(full["accuracy"], abs=0.03) and narrowed["accuracy"] > 0.9
