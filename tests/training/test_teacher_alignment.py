"""Pixel KD compares the teacher's and the student's predictions for the same pixels: rule out a misalignment.

The teacher must see exactly the augmented, normalised tensor the student sees, and the loss must notice when
it does not (a teacher input shifted by one pixel changes it).
"""

import torch
from torch import nn

from sstkd.distill.losses import build_criterion
from sstkd.models.segmenter import NetworkConfig, build_network
from sstkd.training.loop import train_segmenter
from sstkd.training.recipe import split_dataset, transform_config

from . import helpers

K = 10
TEACHER = NetworkConfig(head="deeplabv3", backbone="resnet10", output_stride=16, head_channels=16)


class Recording(nn.Module):
    """The wrapped network, remembering every input it gets in train mode (the student) or at all (the teacher)."""

    def __init__(self, network: nn.Module, train_only: bool):
        super().__init__()
        self.network, self.train_only, self.inputs = network, train_only, []

    def forward(self, images):
        if self.training or not self.train_only:
            self.inputs.append(images.detach().clone())
        return self.network(images)


def test_the_teacher_sees_exactly_the_pixels_the_student_trains_on():
    cache = helpers.tiny_cache()
    config = helpers.config(epochs=2, scale_range=(0.5, 1.5), hflip=True)
    transforms = transform_config(config, helpers.STATS)
    train_set = split_dataset(cache, "train", transforms, train=True, seed=0)
    val_set = split_dataset(cache, "val", transforms, train=False, seed=0)
    torch.manual_seed(0)
    student = Recording(build_network(helpers.STUDENT, K), train_only=True)
    teacher = Recording(build_network(TEACHER, K), train_only=False)
    criterion = build_criterion({"cross_entropy": {}, "pixel_kd": {"weight": 10.0}}, K, 64, 64)
    train_segmenter(student, criterion, train_set, val_set, K, config, teacher=teacher)
    assert len(teacher.inputs) == len(student.inputs) == 2 * (16 // 8)  # every step of both epochs
    for seen_by_teacher, seen_by_student in zip(teacher.inputs, student.inputs):
        assert torch.equal(seen_by_teacher, seen_by_student)
    assert not torch.equal(teacher.inputs[0], teacher.inputs[2])  # augmented anew each epoch, not a fixed batch


def _kd(student_output, teacher_output, images, masks):
    criterion = build_criterion({"pixel_kd": {"weight": 1.0}}, K, 64, 64)
    return float(criterion(student_output, teacher_output, {"images": images, "masks": masks})[1]["pixel_kd"])


def test_a_teacher_input_shifted_by_one_pixel_changes_the_pixel_kd_loss():
    torch.manual_seed(0)
    student, teacher = build_network(helpers.STUDENT, K).eval(), build_network(TEACHER, K).eval()
    images = torch.randn(2, 3, 48, 48)
    masks = torch.randint(0, K, (2, 48, 48))
    shifted = torch.roll(images, shifts=1, dims=-1)
    with torch.no_grad():
        aligned = _kd(student(images), teacher(images), images, masks)
        misaligned = _kd(student(images), teacher(shifted), images, masks)
        # A teacher identical to the student: zero only when both see the same pixels.
        itself = _kd(student(images), student(images), images, masks)
        itself_shifted = _kd(student(images), student(shifted), images, masks)
    assert abs(misaligned - aligned) > 1e-3 * aligned
    assert itself < 1e-7 < 1e-4 < itself_shifted
