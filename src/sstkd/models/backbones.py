"""Dilated torchvision backbones that expose the features the distillation needs.

Every backbone returns three maps: ``low`` (stage 1, stride 4: the input of the texture modules), ``mid``
(the input of the auxiliary head) and ``high`` (the last stage, stride ``output_stride``).

torchvision's ``replace_stride_with_dilation`` refuses BasicBlock (ResNet-18/34), so stride is traded for dilation
here by editing the convolutions of a stage in place, the same way for every block type: the stage's stride-2
convolutions become stride 1, and its k×k convolutions get dilation ``d`` with padding ``d·(k-1)/2``.
Parameter shapes do not change, so torchvision-format ImageNet weights still load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import mobilenet_v2, resnet
from torchvision.models.resnet import BasicBlock

RESNET_DEPTHS = {
    10: (BasicBlock, [1, 1, 1, 1]),  # a CPU-sized ResNet built from torchvision's blocks
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (resnet.Bottleneck, [3, 4, 6, 3]),
    101: (resnet.Bottleneck, [3, 4, 23, 3]),
}


def dilate_stage(stage: nn.Module, dilation: int) -> None:
    """Turn a stride-2 stage into a stride-1 stage with dilated k×k convolutions (in place)."""
    for module in stage.modules():
        if isinstance(module, nn.Conv2d):
            if module.stride == (2, 2):
                module.stride = (1, 1)
            kernel = module.kernel_size[0]
            if kernel > 1:
                module.dilation = (dilation, dilation)
                module.padding = (dilation * (kernel - 1) // 2,) * 2


def load_backbone_weights(model: nn.Module, path: str | Path, ignore_prefixes: tuple[str, ...]) -> None:
    """Load a torchvision-format state dict (e.g. ``resnet18-f37072fd.pth``) into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone_weights: no file at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    own = model.state_dict()
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.startswith(ignore_prefixes)]
    if mismatched or missing or not state:
        detail = "; ".join(mismatched[:5] + [f"missing {k}" for k in missing[:5]])
        raise ValueError(f"backbone_weights: {path} does not match this backbone ({detail or 'empty file'})")
    model.load_state_dict(state, strict=False)


class ResNetBackbone(nn.Module):
    def __init__(self, depth: int, output_stride: int = 8, weights: str | Path | None = None):
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"backbone depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        block, layers = RESNET_DEPTHS[depth]
        net = resnet.ResNet(block, layers)
        if weights:
            load_backbone_weights(net, weights, ignore_prefixes=("fc.",))
        if output_stride <= 16:
            dilate_stage(net.layer4, 2 if output_stride == 16 else 4)
        if output_stride == 8:
            dilate_stage(net.layer3, 2)
        self.stage1 = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        self.layer2, self.layer3, self.layer4 = net.layer2, net.layer3, net.layer4
        expansion = block.expansion
        self.low_channels, self.mid_channels, self.high_channels = 64 * expansion, 256 * expansion, 512 * expansion

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        low = self.stage1(x)
        mid = self.layer3(self.layer2(low))
        return low, mid, self.layer4(mid)


class MobileNetV2Backbone(nn.Module):
    """torchvision MobileNetV2 up to its 320-channel block (the 1280-channel 1×1 is dropped, as in DeepLabV3+)."""

    def __init__(self, output_stride: int = 8, width_mult: float = 1.0, weights: str | Path | None = None):
        super().__init__()
        net = mobilenet_v2(weights=None, width_mult=width_mult)
        if weights:
            load_backbone_weights(net, weights, ignore_prefixes=("classifier.", "features.18."))
        features = net.features
        if output_stride <= 16:
            dilate_stage(features[14:18], 2 if output_stride == 16 else 4)
        if output_stride == 8:
            dilate_stage(features[7:14], 2)
        self.stage1, self.stage2, self.stage3 = features[:4], features[4:14], features[14:18]
        self.low_channels = features[3].out_channels
        self.mid_channels = features[13].out_channels
        self.high_channels = features[17].out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        low = self.stage1(x)
        mid = self.stage2(low)
        return low, mid, self.stage3(mid)


def build_backbone(name: str, output_stride: int = 8, weights: str | Path | None = None, width_mult: float = 1.0):
    """``resnet10|18|34|50|101`` or ``mobilenetv2``."""
    if name.startswith("resnet") and name[6:].isdigit():
        return ResNetBackbone(int(name[6:]), output_stride, weights)
    if name == "mobilenetv2":
        return MobileNetV2Backbone(output_stride, width_mult, weights)
    raise ValueError(f"backbone: unknown name {name!r}; choose resnet10/18/34/50/101 or mobilenetv2")
