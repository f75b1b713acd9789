"""One segmentation network type and one builder for every teacher and student."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from sstkd.models.backbones import build_backbone
from sstkd.models.heads import AuxiliaryHead, DeepLabV3Head, FCNHead, PyramidPoolingHead


class SegmentationOutput(NamedTuple):
    """What every network returns (a NamedTuple, so DDP, ``torch.compile`` and autocast traverse it).

    logits ``(B, K, H, W)`` at input resolution; low_level ``(B, C1, H/4, W/4)`` (backbone stage 1);
    high_level ``(B, C4, H/s, W/s)`` (last stage); aux_logits ``(B, K, H, W)`` or ``None`` (eval mode or no aux);
    head_features ``(B, head_channels, H/s, W/s)``: the head's feature before its classifier, or ``None``.
    """

    logits: torch.Tensor
    low_level: torch.Tensor
    high_level: torch.Tensor
    aux_logits: torch.Tensor | None
    head_features: torch.Tensor | None = None


class NetworkConfig(BaseModel):
    """Architecture of one network. ``backbone_weights``: null or ``random`` (from scratch), ``imagenet``
    (torchvision's, through the torch hub cache) or a local file (see ``models/backbones.py``)."""

    model_config = ConfigDict(extra="forbid")
    head: str = Field("deeplabv3", pattern="^(deeplabv3|pspnet|fcn)$")
    backbone: Literal["resnet10", "resnet18", "resnet34", "resnet50", "resnet101", "resnet18_deep", "resnet50_deep",
                      "resnet101_deep", "mobilenetv2"] = "resnet18"
    output_stride: Literal[8, 16, 32] = 8
    head_channels: int = Field(256, ge=8)
    aux_head: bool = True
    width_mult: float = Field(1.0, gt=0)
    backbone_weights: str | None = None
    # ResNets: `torchvision` keeps the previous stage's dilation in a dilated stage's first 3×3 conv (torchvision's
    # and CIRKD's networks, needed to reproduce their weights' outputs); `uniform` (the default, and what every
    # model trained before this option used) dilates all of them.
    dilation_scheme: Literal["uniform", "torchvision"] = "uniform"
    # A fixed per-channel affine map (and channel order) in front of the backbone, from this project's input
    # normalisation to the one a converted network was trained with (models/converters.py); its values are buffers
    # of the state dict.
    input_adapter: bool = False

    def identity(self) -> dict:
        """The configuration as fingerprints see it: keys added after models were first trained are left out while
        they hold their default, so every earlier model (and its resumable checkpoint) keeps its fingerprint; a
        ``backbone_weights`` file enters by its content, not its path, so a study moved to another data root (or a
        teammate's `dvc pull` into another folder) keeps its models' fingerprints."""
        later = {key for key in ADDED_LATER if getattr(self, key) == type(self).model_fields[key].default}
        identity = self.model_dump(exclude=later)
        weights = self.backbone_weights
        if weights and Path(weights).is_file():  # not a keyword (random, imagenet): a file
            identity["backbone_weights"] = f"sha256:{file_sha256(weights)}"
        return identity


def file_sha256(path: str | Path) -> str:
    """The file's SHA-256, read once per file version (a fingerprint is taken several times a run)."""
    stat = Path(path).stat()
    return _file_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_sha256(resolved: str, size: int, mtime_ns: int) -> str:
    with open(resolved, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


ADDED_LATER = ("dilation_scheme", "input_adapter")


class InputAdapter(nn.Module):
    """``x[:, order] * scale + shift`` per channel: this project's standardised RGB input → a converted network's
    own input space (e.g. CIRKD's BGR, 0–255, mean-subtracted). Exact: padding happens after it."""

    def __init__(self):
        super().__init__()
        self.register_buffer("order", torch.arange(3))
        self.register_buffer("scale", torch.ones(3))
        self.register_buffer("shift", torch.zeros(3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, self.order] * self.scale.view(1, 3, 1, 1) + self.shift.view(1, 3, 1, 1)


class SegmentationNetwork(nn.Module):
    def __init__(self, config: NetworkConfig, num_classes: int):
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.backbone = build_backbone(config.backbone, config.output_stride, config.backbone_weights,
                                       config.width_mult, config.dilation_scheme)
        high = self.backbone.high_channels
        if config.head == "deeplabv3":
            rates = (12, 24, 36) if config.output_stride == 8 else (6, 12, 18)
            self.head = DeepLabV3Head(high, num_classes, config.head_channels, rates)
        elif config.head == "fcn":
            self.head = FCNHead(high, num_classes, config.head_channels)
        else:
            self.head = PyramidPoolingHead(high, num_classes, config.head_channels)
        self.aux_head = AuxiliaryHead(self.backbone.mid_channels, num_classes) if config.aux_head else None
        self.input_adapter = InputAdapter() if config.input_adapter else nn.Identity()

    def stage1_features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's stage-1 feature alone (texture diagnostics), through the input adapter as ``forward``."""
        return self.backbone.stage1(self.input_adapter(images))

    @property
    def low_level_channels(self) -> int:
        return self.backbone.low_channels

    @property
    def head_channels(self) -> int:
        return self.config.head_channels

    def logits_from_head(self, head_features: torch.Tensor, size) -> torch.Tensor:
        """The classifier on the head's feature, upsampled to ``size``: what ``forward`` returns as logits (the
        teacher-output cache stores the small head feature and derives the full-size logits again)."""
        return F.interpolate(self.head.classifier(head_features), size=size, mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor) -> SegmentationOutput:
        size = images.shape[-2:]
        low, mid, high = self.backbone(self.input_adapter(images))
        head_features = self.head.features(high)
        logits = self.logits_from_head(head_features, size)
        aux = None
        if self.aux_head is not None and self.training:
            aux = F.interpolate(self.aux_head(mid), size=size, mode="bilinear", align_corners=False)
        return SegmentationOutput(logits, low, high, aux, head_features)


def build_network(config: NetworkConfig | dict, num_classes: int) -> SegmentationNetwork:
    """The one place a network is built from configuration."""
    if not isinstance(config, NetworkConfig):
        config = NetworkConfig.model_validate(config)
    return SegmentationNetwork(config, num_classes)


PRESETS: dict[str, dict] = {
    # Networks of the papers' tables (SSTKD.md), 7x7 stem: PSPNet-ResNet101 -> PSPNet-ResNet18 (SSTKD), DeepLabV3-
    # ResNet101 -> DeepLabV3-ResNet18 / MobileNetV2 (CIRKD). The paper envs use their deep-stem variants.
    "deeplabv3_resnet101": {"head": "deeplabv3", "backbone": "resnet101", "head_channels": 256},
    "pspnet_resnet101": {"head": "pspnet", "backbone": "resnet101", "head_channels": 512},
    "pspnet_resnet18": {"head": "pspnet", "backbone": "resnet18", "head_channels": 512},
    "deeplabv3_resnet18": {"head": "deeplabv3", "backbone": "resnet18", "head_channels": 256},
    "deeplabv3_mobilenetv2": {"head": "deeplabv3", "backbone": "mobilenetv2", "head_channels": 256},
}
