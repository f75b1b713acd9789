"""The diagnostics measure a run without changing it, and measure what they say they measure."""

import copy

import pytest
import torch
import torch.nn.functional as F

from sstkd.data.sources import IGNORE_INDEX
from sstkd.distill.losses import build_criterion
from sstkd.models.segmenter import NetworkConfig, build_network
from sstkd.training.diagnostics import (
    pixel_kl,
    recompute_batchnorm_statistics,
    term_gradient_norms,
    weight_norms,
)
from sstkd.training.recipe import check_same_input_space

from . import helpers

K = 10
TEACHER = NetworkConfig(head="deeplabv3", backbone="resnet10", output_stride=16, head_channels=16)


def _networks():
    torch.manual_seed(0)
    return build_network(helpers.STUDENT, K), build_network(TEACHER, K).eval()


def _batch():
    g = torch.Generator().manual_seed(3)
    masks = torch.randint(0, K, (4, 32, 32), generator=g)
    masks[:, :4] = IGNORE_INDEX
    return torch.randn(4, 3, 32, 32, generator=g), masks


def test_gradient_norms_equal_the_analytic_gradients_at_the_logits():
    student, teacher = _networks()
    criterion = build_criterion({"cross_entropy": {"aux_weight": 0.4}, "pixel_kd": {"weight": 10.0}}, K, 64, 64)
    images, masks = _batch()
    torch.manual_seed(7)
    norms = term_gradient_norms(student, criterion, teacher, images, masks)
    torch.manual_seed(7)  # the same dropout masks as the copy drew inside
    logits = copy.deepcopy(student).train()(images).logits.detach()
    with torch.no_grad():
        teacher_probabilities = teacher(images).logits.softmax(1)
    probabilities = logits.softmax(1)
    valid = masks != IGNORE_INDEX
    one_hot = F.one_hot(masks.clamp_max(K - 1), K).permute(0, 3, 1, 2).float()
    ce_gradient = (probabilities - one_hot) * valid[:, None] / valid.sum()  # mean over valid pixels
    kd_gradient = 10.0 * (probabilities - teacher_probabilities) / masks.numel()  # KL mean over every pixel
    assert norms["cross_entropy"]["logits"] == pytest.approx(float(ce_gradient.norm()), rel=1e-4)
    assert norms["pixel_kd"]["logits"] == pytest.approx(float(kd_gradient.norm()), rel=1e-4)
    assert norms["cross_entropy"]["cosine_to_cross_entropy"] == pytest.approx(1.0, abs=1e-5)
    assert -1 <= norms["pixel_kd"]["cosine_to_cross_entropy"] < 1
    assert norms["pixel_kd"]["parameters"] > 0 and norms["pixel_kd"]["stage1"] > 0


def test_gradient_norms_leave_the_student_the_critic_and_the_random_state_unchanged():
    student, teacher = _networks()
    student.train()
    criterion = build_criterion({"cross_entropy": {}, "adversarial": {"weight": 0.1},
                                 "structural": {"weight": 0.3, "levels": 2, "directions": 4}}, K, 64, 64)
    before = copy.deepcopy(student.state_dict()), copy.deepcopy(criterion.state_dict())
    rng = torch.get_rng_state()
    norms = term_gradient_norms(student, criterion, teacher, *_batch())
    assert torch.equal(torch.get_rng_state(), rng)
    for now, then in zip((student.state_dict(), criterion.state_dict()), before):
        assert all(torch.equal(now[k], then[k]) for k in then)  # BatchNorm running statistics included
    assert all(p.grad is None for p in student.parameters())
    # A texture term reaches stage 1 directly, not through the logits.
    assert norms["structural"]["logits"] == 0 and norms["structural"]["stage1"] > 0


def test_a_probed_run_trains_exactly_as_an_unprobed_one():
    cache = helpers.tiny_cache()
    losses = {"cross_entropy": {}, "pixel_kd": {"weight": 10.0}}
    teacher_payload, _ = helpers.train(cache=cache, epochs=1)
    probe_images, probe_masks = _batch()

    def probe(student, criterion, teacher):
        norms = term_gradient_norms(student, criterion, teacher, probe_images, probe_masks)
        return {"kd_norm": norms["pixel_kd"]["parameters"],
                "kl": pixel_kl(student, teacher, probe_images)}  # train mode: on a copy

    plain, plain_result = helpers.train_network("student", cache, helpers.INFO, helpers.STATS, helpers.STUDENT, losses,
                                                helpers.config(epochs=2), teacher_payload=teacher_payload)
    probed, probed_result = helpers.train_network("student", cache, helpers.INFO, helpers.STATS, helpers.STUDENT,
                                                  losses, helpers.config(epochs=2), teacher_payload=teacher_payload,
                                                  probes=[probe])
    for key, value in plain["state_dict"].items():
        assert torch.equal(value, probed["state_dict"][key]), key
    assert [h["loss"] for h in plain_result.history] == [h["loss"] for h in probed_result.history]
    assert all(h["kd_norm"] > 0 and h["kl"] > 0 for h in probed_result.history)


def test_precise_batchnorm_statistics_are_the_exact_average_over_the_batches():
    student, _ = _networks()
    batches = [torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    before = copy.deepcopy(student.state_dict())
    precise = recompute_batchnorm_statistics(student, batches)
    assert not precise.training
    conv, norm = student.backbone.stage1[0], precise.backbone.stage1[1]  # the stem: conv, then its BatchNorm
    assert isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d)
    with torch.no_grad():
        inputs = [conv(b) for b in batches]
    expected_mean = torch.stack([x.mean((0, 2, 3)) for x in inputs]).mean(0)
    torch.testing.assert_close(norm.running_mean, expected_mean, rtol=1e-4, atol=1e-5)
    assert int(norm.num_batches_tracked) == 3
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())  # the original is untouched
    with pytest.raises(ValueError, match="at least one batch"):
        recompute_batchnorm_statistics(student, [])


def test_pixel_kl_is_zero_for_the_teacher_itself_and_equals_the_pixel_kd_loss():
    student, teacher = _networks()
    images, masks = _batch()
    assert pixel_kl(teacher, teacher, images) == pytest.approx(0.0, abs=1e-6)
    student.eval()
    loss = build_criterion({"pixel_kd": {}}, K, 64, 64)
    with torch.no_grad():
        _, values = loss(student(images), teacher(images), {"images": images, "masks": masks})
    assert pixel_kl(student, teacher, images) == pytest.approx(float(values["pixel_kd"]), rel=1e-5)


def test_a_teacher_normalised_otherwise_is_refused():
    check_same_input_space({"normalization": helpers.STATS}, helpers.STATS)
    check_same_input_space({}, helpers.STATS)  # nothing recorded: nothing to compare
    other = {"mean": [0.4, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    with pytest.raises(ValueError, match="other pixels than the student"):
        check_same_input_space({"normalization": other}, helpers.STATS)


def test_weight_norms_split_batchnormed_convolutions_from_the_rest():
    student, _ = _networks()
    norms = weight_norms(student)
    classifier = student.head.classifier[1].weight  # PSPNet's 1x1 classifier: no BatchNorm after it
    assert norms["other"] >= float(classifier.detach().norm()) > 0
    stem = student.backbone.stage1[0].weight  # followed by its BatchNorm
    assert norms["batchnormed"] >= float(stem.detach().norm()) > 0
    with torch.no_grad():
        stem.mul_(3)
    grown = weight_norms(student)
    assert grown["batchnormed"] > norms["batchnormed"] and grown["other"] == norms["other"]
