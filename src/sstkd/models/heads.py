"""Segmentation heads: DeepLabV3's ASPP (torchvision's), PSPNet's pyramid pooling, and an FCN auxiliary head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class PyramidPoolingHead(nn.Module):
    """PSPNet (Zhao et al., 2017): pool to 1×1, 2×2, 3×3, 6×6 bins, project, upsample, concatenate, classify."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 512, bins=(1, 2, 3, 6), dropout=0.1):
        super().__init__()
        branch_channels = in_channels // len(bins)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), _conv_bn_relu(in_channels, branch_channels, 1)) for b in bins
        )
        self.fuse = _conv_bn_relu(in_channels + branch_channels * len(bins), channels, 3)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's feature before the classifier (what CIRKD's feature losses distil)."""
        size = x.shape[-2:]
        pooled = [F.interpolate(b(x), size=size, mode="bilinear", align_corners=False) for b in self.branches]
        return self.fuse(torch.cat([x, *pooled], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DeepLabV3Head(nn.Module):
    """ASPP (torchvision) followed by a 3×3 conv and the classifier, as torchvision's ``DeepLabHead``."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, atrous_rates=(12, 24, 36)):
        super().__init__()
        self.aspp = ASPP(in_channels, list(atrous_rates), out_channels=channels)
        self.fuse = _conv_bn_relu(channels, channels, 3)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's feature before the classifier (what CIRKD's feature losses distil)."""
        return self.fuse(self.aspp(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class FCNHead(nn.Module):
    """FCN's head (torchvision's ``FCNHead``): a 3×3 conv, BN, ReLU, dropout and the classifier."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 512, dropout: float = 0.1):
        super().__init__()
        self.fuse = _conv_bn_relu(in_channels, channels, 3)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Conv2d(channels, num_classes, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's feature before the classifier."""
        return self.fuse(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class AuxiliaryHead(nn.Module):
    """FCN head on the stage-3 feature, used only for the 0.4-weighted auxiliary loss during training."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        channels = max(in_channels // 4, 16)
        self.block = nn.Sequential(_conv_bn_relu(in_channels, channels, 3), nn.Dropout2d(0.1),
                                   nn.Conv2d(channels, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)
