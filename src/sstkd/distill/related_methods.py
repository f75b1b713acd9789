"""The KD methods the SSTKD and CIRKD tables compare against, behind the call shape of ``losses.py``:
``loss(student, teacher, batch) -> scalar``.

As in CIRKD's code (winycg/CIRKD at its CVPR-2022 commit 2d8ad0f), every feature term here distils the head's
feature before its classifier (``SegmentationOutput.head_features``: after ASPP / pyramid pooling and the 3×3
fuse), not a backbone stage. Each docstring gives the method's definition and the weight its code trains with
(set in ``conf/base/parameters_distillation.yml``); ``tests/distill/test_related_methods.py`` checks each
against a direct, slow computation.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sstkd.data.sources import IGNORE_INDEX
from sstkd.models.segmenter import SegmentationOutput


def full_precision(forward):
    """Run a loss's ``forward`` with autocast off: cosines and similarities at τ = 0.1 in bf16 (a step of ~4e-3)
    are as noisy as the student-teacher differences these terms measure (the texture terms do the same)."""
    @functools.wraps(forward)
    def wrapper(self, student: SegmentationOutput, teacher: SegmentationOutput, batch):
        device = next(t for t in student if isinstance(t, torch.Tensor)).device
        with torch.autocast(device.type, enabled=False):
            return forward(self, student, teacher, batch)
    return wrapper


def _head_features(output: SegmentationOutput, side: str) -> torch.Tensor:
    if output.head_features is None:
        raise ValueError(f"the {side}'s output carries no head_features (a network built by sstkd does)")
    return output.head_features


def _match_size(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The larger map average-pooled to the other's size (student and teacher may differ in output stride)."""
    if student.shape[-2:] == teacher.shape[-2:]:
        return student, teacher
    if student.shape[-2] * student.shape[-1] > teacher.shape[-2] * teacher.shape[-1]:
        return F.adaptive_avg_pool2d(student, teacher.shape[-2:]), teacher
    return student, F.adaptive_avg_pool2d(teacher, student.shape[-2:])


def _feature_pair(student: SegmentationOutput, teacher: SegmentationOutput) -> tuple[torch.Tensor, torch.Tensor]:
    return _match_size(_head_features(student, "student").float(), _head_features(teacher, "teacher").detach().float())


def downsampled_labels(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Labels at a feature map's size by nearest neighbour (ignored pixels stay ignored)."""
    return F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0].long()


class AttentionTransfer(nn.Module):
    """AT (Zagoruyko & Komodakis, 2017): the spatial attention map ``a = normalize(mean_c F_c^p)`` (flattened
    over pixels, L2-normalised per image) of the head feature; loss = mean squared difference of the student's and
    teacher's maps. Channel counts may differ. CIRKD's script: weight 10000 with pixel KD 1, p = 2."""

    needs_teacher = True

    def __init__(self, p: float = 2.0):
        super().__init__()
        self.p = p

    def attention(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features.abs().pow(self.p).mean(dim=1).flatten(1), dim=1)

    @full_precision
    def forward(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        s, t = _feature_pair(student, teacher)
        return (self.attention(s) - self.attention(t)).pow(2).mean()


class FitNetHint(nn.Module):
    """FitNet (Romero et al., 2015): the student's head feature through a trained 1×1 convolution (no bias, no BN,
    as CIRKD's) regresses the teacher's by mean squared error. CIRKD's script: weight 10 with pixel KD 1."""

    needs_teacher = True

    def __init__(self, student_head_channels: int, teacher_head_channels: int):
        super().__init__()
        self.regressor = nn.Conv2d(student_head_channels, teacher_head_channels, 1, bias=False)

    @full_precision
    def forward(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        s = self.regressor(_head_features(student, "student").float())
        s, t = _match_size(s, _head_features(teacher, "teacher").detach().float())
        return F.mse_loss(s, t)


def _pearson(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    a = a - a.mean(dim=dim, keepdim=True)
    b = b - b.mean(dim=dim, keepdim=True)
    return F.cosine_similarity(a, b, dim=dim, eps=1e-8)


class DISTRelation(nn.Module):
    """DIST (Huang et al., 2022): class probabilities (softmax at temperature τ) of every pixel of the batch as
    rows of an ``(N, K)`` matrix; ``inter`` = 1 − Pearson correlation across classes, mean over pixels;
    ``intra`` = 1 − Pearson correlation across all N pixels, mean over classes; loss = τ²(β·inter + γ·intra).
    Invariant to a positive scale and a shift of either side's probabilities: the student follows the teacher's
    ranking, not its values, which is meant to let a weak student learn from a much stronger teacher.
    DIST_KD's segmentation code: τ = 1, β = γ = 1, weight 1 (and 0.4 on the auxiliary logits; here the main
    logits only)."""

    needs_teacher = True

    def __init__(self, temperature: float = 1.0, inter_weight: float = 1.0, intra_weight: float = 1.0):
        super().__init__()
        self.temperature, self.inter_weight, self.intra_weight = temperature, inter_weight, intra_weight

    @full_precision
    def forward(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        tau = self.temperature
        classes = student.logits.shape[1]
        p_s = (student.logits.float() / tau).softmax(dim=1).movedim(1, -1).reshape(-1, classes)
        p_t = (teacher.logits.detach().float() / tau).softmax(dim=1).movedim(1, -1).reshape(-1, classes)
        inter = 1 - _pearson(p_s, p_t, dim=1).mean()
        intra = 1 - _pearson(p_s, p_t, dim=0).mean()
        return tau * tau * (self.inter_weight * inter + self.intra_weight * intra)


def class_prototype_similarity(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """IFVD's map ``(B, h, w)``: the cosine similarity of each pixel's feature to the mean feature (prototype) of its
    class in the same image; 1 at ignored pixels (as CIRKD's code: their "prototype" is the pixel itself)."""
    valid = labels != IGNORE_INDEX
    one_hot = F.one_hot(labels.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2).float()
    one_hot = (one_hot * valid[:, None]).flatten(2)                                   # (B, K, N)
    flat = features.flatten(2)                                                        # (B, C, N)
    prototypes = (flat @ one_hot.transpose(1, 2)) / (one_hot.sum(2)[:, None] + 1e-6)  # (B, C, K)
    own = torch.where(valid.flatten(1)[:, None], prototypes @ one_hot, flat)         # (B, C, N)
    return F.cosine_similarity(flat, own, dim=1, eps=1e-8).view(labels.shape)


class IntraClassFeatureVariation(nn.Module):
    """IFVD (Wang et al., 2020): each pixel's cosine similarity to its class prototype (the class's mean head
    feature in that image; labels nearest-downsampled to the feature map) describes how features vary within a
    class; the student's map matches the teacher's by mean squared error (ignored pixels are 1 on both sides and
    count in the mean, as in CIRKD's code). Feature widths may differ. CIRKD's script: weight 20 with pixel KD 1
    and the adversarial term."""

    needs_teacher = True

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    @full_precision
    def forward(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        s, t = _feature_pair(student, teacher)
        labels = downsampled_labels(batch["masks"], s.shape[-2:])
        with torch.no_grad():
            target = class_prototype_similarity(t, labels, self.num_classes)
        return F.mse_loss(class_prototype_similarity(s, labels, self.num_classes), target)


def _similarity_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher ‖ student) of row-wise softmax distributions, mean over rows, × T²."""
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return (log_t.exp() * (log_t - log_s)).sum(dim=1).mean() * temperature ** 2


class CrossImageRelationDistillation(nn.Module):
    """CIRKD (Yang et al., 2022): the student learns the teacher's pixel relations across images.

    * **mini-batch pixel-to-pixel** (weight ``minibatch_weight``): for every ordered pair of images (i, j) of a
      group of ``group_size`` consecutive images, the ``(h·w) × (h·w)`` cosine similarities of i's pixels to j's,
      softmax over j's pixels at ``temperature``; KL(teacher ‖ student) averaged over rows and pairs, then over
      groups. CIRKD relates the images of one GPU (its batch of 16 over 8 GPUs: groups of 2), so the term is the
      same whatever the number of processes here; each group is recomputed in backward (at 512×1024 a pair's
      maps are 8192² each). Channel counts may differ.
    * **memory pixel-to-pixel / pixel-to-region** (``memory_pixel_weight``, ``memory_region_weight``): the
      student's labelled pixels, through a trained projection (1×1 conv, BN, ReLU, 1×1 conv to the teacher's
      width), against teacher embeddings kept in per-class queues (``pixel_memory`` pixels and ``region_memory``
      class-mean regions per class, filled from the teacher's features of each batch before the loss); for each
      anchor, the similarity distribution over ``pixel_contrast // K + 1`` sampled entries per class (one random
      index set for all classes, as CIRKD) at ``temperature``, matched by KL at ``kd_temperature``.

    Defaults are CIRKD's (Cityscapes: τ 0.1, memories 20000 / 2000, contrast sizes 4096 / 1024, weights 1 /
    0.1 / 0.1; its VOC scripts use 0.01 / 0.01). The enqueued pixels of a class are pixels of that class (CIRKD's
    code samples random positions of the image there). Single-process memory: with DDP each process keeps its own.
    """

    needs_teacher = True
    # Not broadcast from rank 0 by DDP at every step (training/loop.py): each process fills its own memory.
    process_local_buffers = ("pixel_queue", "region_queue", "pixel_pointer", "region_pointer")

    def __init__(self, num_classes: int, student_head_channels: int, teacher_head_channels: int,
                 temperature: float = 0.1, kd_temperature: float = 1.0, minibatch_weight: float = 1.0,
                 memory_pixel_weight: float = 0.1, memory_region_weight: float = 0.1, pixel_memory: int = 20000,
                 region_memory: int = 2000, pixel_contrast: int = 4096, region_contrast: int = 1024,
                 pixels_per_update: int = 16, group_size: int = 2):
        super().__init__()
        if min(pixel_memory, region_memory, pixel_contrast, region_contrast, pixels_per_update, group_size) < 1:
            raise ValueError("memory, contrast, update and group sizes must be >= 1")
        self.group_size = group_size
        self.num_classes, self.temperature, self.kd_temperature = num_classes, temperature, kd_temperature
        self.weights = (minibatch_weight, memory_pixel_weight, memory_region_weight)
        self.pixels_per_update = pixels_per_update
        self.pixel_samples = min(pixel_contrast // num_classes + 1, pixel_memory)
        self.region_samples = min(region_contrast // num_classes + 1, region_memory)
        width = teacher_head_channels
        # Only when a memory term is on: an unused trained module would stop DDP at its second step.
        self.projection = (nn.Sequential(nn.Conv2d(student_head_channels, width, 1, bias=False), nn.BatchNorm2d(width),
                                         nn.ReLU(inplace=True), nn.Conv2d(width, width, 1, bias=False))
                           if memory_pixel_weight or memory_region_weight else None)
        self.register_buffer("pixel_queue", F.normalize(torch.randn(num_classes, pixel_memory, width), dim=2))
        self.register_buffer("region_queue", F.normalize(torch.randn(num_classes, region_memory, width), dim=2))
        self.register_buffer("pixel_pointer", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("region_pointer", torch.zeros(num_classes, dtype=torch.long))

    def _group_relation(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s, t = F.normalize(s.flatten(2), dim=1), F.normalize(t.flatten(2), dim=1)   # (G, C, N)
        s_sim = torch.einsum("icn,jcm->ijnm", s, s) / self.temperature                # (G, G, N, N)
        t_sim = torch.einsum("icn,jcm->ijnm", t, t) / self.temperature
        return _similarity_kl(s_sim.flatten(0, 2), t_sim.flatten(0, 2))

    def minibatch_pixel_relation(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        groups = [(s[i:i + self.group_size], t[i:i + self.group_size]) for i in range(0, s.shape[0], self.group_size)]
        if torch.is_grad_enabled():
            values = [checkpoint(self._group_relation, gs, gt, use_reentrant=False) for gs, gt in groups]
        else:
            values = [self._group_relation(gs, gt) for gs, gt in groups]
        return torch.stack(values).mean()

    @torch.no_grad()
    def _enqueue(self, t: torch.Tensor, labels: torch.Tensor) -> None:
        for features, image_labels in zip(t.flatten(2), labels.flatten(1)):                # (C, N), (N,)
            for label in image_labels.unique().tolist():
                if label == IGNORE_INDEX or not 0 <= label < self.num_classes:
                    continue
                members = features[:, image_labels == label]                                  # (C, n)
                region = self.region_pointer[label]
                self.region_queue[label, region] = F.normalize(members.mean(dim=1), dim=0)
                self.region_pointer[label] = (region + 1) % self.region_queue.shape[1]
                chosen = members[:, torch.randperm(members.shape[1], device=members.device)[:self.pixels_per_update]]
                size, start = chosen.shape[1], int(self.pixel_pointer[label])
                capacity = self.pixel_queue.shape[1]
                if start + size > capacity:
                    start = capacity - size
                self.pixel_queue[label, start:start + size] = chosen.T
                self.pixel_pointer[label] = (start + size) % capacity

    def _memory_relation(self, anchors_s: torch.Tensor, anchors_t: torch.Tensor, queue: torch.Tensor,
                         samples: int) -> torch.Tensor:
        index = torch.randperm(queue.shape[1], device=queue.device)[:samples]
        bank = queue[:, index].reshape(-1, queue.shape[2])                                      # (K·samples, C)
        return _similarity_kl(anchors_s @ bank.T / self.temperature, anchors_t @ bank.T / self.temperature,
                              self.kd_temperature)

    @full_precision
    def forward(self, student: SegmentationOutput, teacher: SegmentationOutput, batch) -> torch.Tensor:
        s, t = _feature_pair(student, teacher)
        w_batch, w_pixel, w_region = self.weights
        total = w_batch * self.minibatch_pixel_relation(s, t) if w_batch else s.new_zeros(())
        if not (w_pixel or w_region):
            return total
        labels = downsampled_labels(batch["masks"], t.shape[-2:])
        t_norm = F.normalize(t, dim=1)
        if self.training and torch.is_grad_enabled():
            self._enqueue(t_norm, labels)
        valid = (labels != IGNORE_INDEX).flatten()
        projected = F.normalize(self.projection(_head_features(student, "student").float()), dim=1)
        projected, _ = _match_size(projected, t)
        anchors_s = projected.movedim(1, -1).reshape(-1, projected.shape[1])[valid]
        anchors_t = t_norm.movedim(1, -1).reshape(-1, t.shape[1])[valid]
        if anchors_s.shape[0] == 0:  # a crop with no labelled pixel: zero, with a graph for backward and DDP
            return total + 0 * projected.pow(2).mean()
        if w_pixel:
            total = total + w_pixel * self._memory_relation(anchors_s, anchors_t, self.pixel_queue, self.pixel_samples)
        if w_region:
            total = total + w_region * self._memory_relation(anchors_s, anchors_t, self.region_queue,
                                                              self.region_samples)
        return total
