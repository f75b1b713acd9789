import pytest
import torch
from torch import nn

from sstkd.distill.losses import (
    AdversarialDistillation,
    ChannelwiseDistillation,
    CrossEntropyLoss,
    PairwiseDistillation,
    PixelwiseDistillation,
    StatisticalTextureLoss,
    StructuralTextureLoss,
    build_criterion,
)
from sstkd.models.segmenter import SegmentationOutput, build_network

C = 8


def _output(seed, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(2, 5, 32, 32, generator=g), torch.randn(2, C, 16, 16, generator=g),
               torch.randn(2, 12, 4, 4, generator=g)]
    tensors = [t.requires_grad_(requires_grad) for t in tensors]
    return SegmentationOutput(tensors[0], tensors[1], tensors[2], None)


BATCH = {"images": torch.randn(2, 3, 32, 32), "masks": torch.randint(0, 5, (2, 32, 32))}


def _identity_adapter(loss):
    with torch.no_grad():
        loss.adapter.weight.copy_(torch.eye(C).view(C, C, 1, 1))
    return loss


TEACHER_LOSSES = {
    "pixel_kd": lambda: PixelwiseDistillation(temperature=2.0),
    "pairwise": lambda: PairwiseDistillation(),
    "channelwise": lambda: ChannelwiseDistillation(),
    "structural": lambda: _identity_adapter(StructuralTextureLoss(C, C, levels=2, directions=4)),
    "statistical": lambda: _identity_adapter(StatisticalTextureLoss(C, C, levels=(4, 8))),
    "structural_without_adapter": lambda: StructuralTextureLoss(C, C, levels=2, directions=4, adapter=False),
    "statistical_without_adapter": lambda: StatisticalTextureLoss(C, C, levels=(4, 8), adapter=False),
}


@pytest.mark.parametrize("name", sorted(TEACHER_LOSSES))
def test_zero_when_student_equals_teacher_positive_otherwise(name):
    loss = TEACHER_LOSSES[name]()
    teacher = _output(0)
    assert float(loss(teacher, teacher, BATCH).detach()) < 1e-5
    assert float(loss(_output(1), teacher, BATCH).detach()) > 1e-3


@pytest.mark.parametrize("name", sorted(TEACHER_LOSSES))
def test_optimiser_steps_reduce_the_loss_and_teacher_gets_no_gradient(name):
    torch.manual_seed(0)
    loss = TEACHER_LOSSES[name]()
    teacher = _output(0, requires_grad=True)
    student = _output(1, requires_grad=True)
    optimizer = torch.optim.Adam([t for t in student if t is not None] + list(loss.parameters()), lr=0.05)
    values = []
    for _ in range(15):
        value = loss(student, teacher, BATCH)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        values.append(float(value.detach()))
    assert values[-1] < 0.8 * values[0], values
    assert all(t.grad is None for t in teacher if t is not None)


def test_cross_entropy_ignores_255_and_adds_aux():
    logits = torch.randn(1, 3, 4, 4)
    masks = torch.full((1, 4, 4), 255)
    masks[0, 0, 0] = 1
    plain = CrossEntropyLoss(aux_weight=0.0)(SegmentationOutput(logits, None, None, None), None, {"masks": masks})
    torch.testing.assert_close(plain, torch.nn.functional.cross_entropy(logits[..., 0, 0], masks[..., 0, 0]))
    with_aux = CrossEntropyLoss(aux_weight=0.4)(SegmentationOutput(logits, None, None, logits), None, {"masks": masks})
    torch.testing.assert_close(with_aux, 1.4 * plain)


def test_ohem_keeps_only_hard_pixels():
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0, 0, :3] = 10.0  # three easy pixels of class 0
    masks = torch.tensor([[[0, 0, 0, 1]]])
    ohem = CrossEntropyLoss(ohem=True, ohem_threshold=0.7, ohem_min_kept=1)
    value = ohem(SegmentationOutput(logits, None, None, None), None, {"masks": masks})
    hard = torch.nn.functional.cross_entropy(logits[..., 3], masks[..., 3])
    torch.testing.assert_close(value, hard, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("options", [{}, {"ohem": True, "ohem_min_kept": 4}, {"class_weights": [1.0, 2.0, 0.5]}])
def test_an_all_ignore_batch_gives_zero_cross_entropy_connected_to_the_logits(options):
    """ADE20K's "other" (0 -> ignore) can fill a whole crop: that batch contributes 0, not NaN."""
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    aux = torch.randn(2, 3, 4, 4, requires_grad=True)
    masks = torch.full((2, 4, 4), 255)
    value = CrossEntropyLoss(aux_weight=0.4, **options)(SegmentationOutput(logits, None, None, aux), None,
                                                         {"masks": masks})
    assert torch.isfinite(value) and float(value.detach()) == 0.0
    value.backward()
    assert logits.grad is not None and aux.grad is not None
    assert not logits.grad.any() and not aux.grad.any()


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5]])
def test_cross_entropy_with_valid_pixels_equals_torch_mean(weights):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 5, 5, generator=g)
    masks = torch.randint(0, 3, (2, 5, 5), generator=g)
    masks[0, :2] = 255
    value = CrossEntropyLoss(aux_weight=0.0, class_weights=weights)(
        SegmentationOutput(logits, None, None, None), None, {"masks": masks})
    weight = torch.tensor(weights) if weights else None
    torch.testing.assert_close(value, torch.nn.functional.cross_entropy(logits, masks, weight=weight,
                                                                        ignore_index=255))


@pytest.mark.parametrize("name", sorted(TEACHER_LOSSES))
def test_teacher_losses_are_finite_on_an_all_ignore_batch(name):
    batch = {"images": BATCH["images"], "masks": torch.full((2, 32, 32), 255)}
    assert torch.isfinite(TEACHER_LOSSES[name]()(_output(1), _output(0), batch))


def test_adversarial_critic_learns_and_generator_term_has_no_critic_gradient():
    torch.manual_seed(0)
    term = AdversarialDistillation(num_classes=5, channels=8)
    teacher, student = _output(0), _output(1, requires_grad=True)
    term(student, teacher, BATCH).backward()
    assert all(p.grad is None for p in term.discriminator.parameters())
    assert student.logits.grad is not None
    optimizer = torch.optim.Adam(term.discriminator.parameters(), lr=1e-3)
    first = None
    for _ in range(30):
        value = term.discriminator_loss(student, teacher, BATCH)
        first = float(value.detach()) if first is None else first
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    assert float(term.discriminator_loss(student, teacher, BATCH).detach()) < first


def test_texture_losses_are_scale_invariant():
    loss = _identity_adapter(StructuralTextureLoss(C, C, levels=2, directions=4))
    teacher, student = _output(0), _output(1)
    scaled = SegmentationOutput(teacher.logits, teacher.low_level * 100, teacher.high_level, None)
    torch.testing.assert_close(loss(student, teacher, BATCH), loss(student, scaled, BATCH), rtol=1e-4, atol=1e-5)


def test_build_criterion_names_bad_keys():
    with pytest.raises(ValueError, match=r"sstkd\.losses\.structural\.level: unknown option"):
        build_criterion({"structural": {"level": 3}}, 5, C, C, where="sstkd.losses")
    with pytest.raises(ValueError, match=r"losses\.texture: unknown loss"):
        build_criterion({"texture": {}}, 5, C, C)
    with pytest.raises(TypeError, match=r"losses\.pixel_kd\.weight must be a number"):
        build_criterion({"pixel_kd": {"weight": "ten"}}, 5, C, C)
    with pytest.raises(ValueError, match=r"losses\.structural: .*level_weights has 1 entries for 3 levels"):
        build_criterion({"structural": {"levels": 3, "level_weights": [1.0]}}, 5, C, C)


def test_criterion_composes_weighted_terms_and_separates_the_critic():
    criterion = build_criterion({"cross_entropy": {}, "pixel_kd": {"weight": 10}, "adversarial": {"weight": 0.1},
                                 "structural": {"weight": 2}}, 5, C, C)
    teacher, student = _output(0), _output(1, requires_grad=True)
    total, values = criterion(student, teacher, BATCH)
    expected = values["cross_entropy"] + 10 * values["pixel_kd"] + 0.1 * values["adversarial"] + 2 * values["structural"]
    torch.testing.assert_close(total, expected)
    names = {id(p) for p in criterion.student_side_parameters()}
    assert all(id(p) not in names for p in criterion.adversarial.discriminator.parameters())
    assert id(criterion.terms["structural"].adapter.weight) in names
    assert criterion.needs_teacher and not build_criterion({"cross_entropy": {}}, 5).needs_teacher


def test_gradients_reach_the_student_network_not_the_teacher_network():
    teacher = build_network({"head": "pspnet", "backbone": "resnet10", "head_channels": 8, "output_stride": 16}, 5)
    student = build_network({"head": "pspnet", "backbone": "resnet10", "head_channels": 8, "output_stride": 16}, 5)
    criterion = build_criterion({"cross_entropy": {}, "pixel_kd": {}, "structural": {}, "statistical": {}}, 5,
                                student.low_level_channels, teacher.low_level_channels)
    images = torch.randn(2, 3, 32, 32)
    teacher.eval()
    with torch.no_grad():
        teacher_out = teacher(images)
    total, _ = criterion(student.train()(images), teacher_out, {"images": images, "masks": BATCH["masks"]})
    total.backward()
    assert student.backbone.stage1[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert isinstance(criterion.terms["structural"].adapter, nn.Conv2d)


def test_structural_loss_equals_its_explicit_subband_definition():
    from sstkd.distill.contourlet import standardize_channels

    loss = _identity_adapter(StructuralTextureLoss(C, C, levels=2, directions=4, level_weights=[1.0, 0.5]))
    student, teacher = _output(1), _output(0)
    s_levels = loss.decompose(standardize_channels(student.low_level))
    t_levels = loss.decompose(standardize_channels(teacher.low_level))
    expected = 0
    for weight, s, t in zip([1.0, 0.5], s_levels, t_levels):
        per_direction = (s - t).pow(2).mean(dim=(2, 3, 4)) / t.pow(2).mean(dim=(2, 3, 4))
        expected = expected + weight * per_direction.mean()
    torch.testing.assert_close(loss(student, teacher, BATCH), expected / 1.5, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls, options", [(StructuralTextureLoss, {"levels": 2, "directions": 4}),
                                          (StatisticalTextureLoss, {"levels": (4, 8)})])
def test_recompute_gives_the_same_loss_and_gradients(cls, options):
    teacher = _output(0)
    results = []
    for recompute in (False, True):
        torch.manual_seed(0)
        loss = cls(C, C, recompute=recompute, **options)
        student = _output(1, requires_grad=True)
        value = loss(student, teacher, BATCH)
        value.backward()
        results.append((value.detach(), student.low_level.grad.clone(), loss.adapter.weight.grad.clone()))
    for plain, recomputed in zip(*results):
        torch.testing.assert_close(recomputed, plain)


@pytest.mark.parametrize("loss_class", [StructuralTextureLoss, StatisticalTextureLoss])
def test_without_an_adapter_the_texture_loss_acts_on_the_students_own_stage_1(loss_class):
    """adapter: false has nothing to train (the loss can only be lowered by changing the student's features),
    matches channel i to channel i, and refuses networks whose stage-1 widths differ."""
    plain = loss_class(C, C, adapter=False)
    assert list(plain.parameters()) == []
    teacher, student = _output(0), _output(1, requires_grad=True)
    value = plain(student, teacher, BATCH)
    value.backward()
    assert student.low_level.grad is not None and float(student.low_level.grad.abs().sum()) > 0
    swapped = SegmentationOutput(teacher.logits, teacher.low_level[:, [1, 0, *range(2, C)]], teacher.high_level, None)
    assert float(plain(teacher, swapped, BATCH)) > 1e-3  # channel order matters: no adapter to re-map it
    with pytest.raises(ValueError, match="adapter: false needs as many student as teacher stage-1 channels, got 8 "
                                         "and 16"):
        loss_class(C, 2 * C, adapter=False)
    criterion = build_criterion({"structural": {"adapter": False}}, 5, C, C)
    assert list(criterion.parameters()) == []
