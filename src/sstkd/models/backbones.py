"""Dilated torchvision backbones that expose the features the distillation needs.

Every backbone returns three maps: ``low`` (stage 1, stride 4: the input of the texture modules), ``mid``
(the input of the auxiliary head) and ``high`` (the last stage, stride ``output_stride``).

torchvision's ``replace_stride_with_dilation`` refuses BasicBlock (ResNet-18/34), so stride is traded for dilation
here by editing the convolutions of a stage in place, the same way for every block type: the stage's stride-2
convolutions become stride 1, and its k×k convolutions get dilation ``d`` with padding ``d·(k-1)/2``.
Parameter shapes do not change, so torchvision-format ImageNet weights still load.

``weights`` of a backbone: ``None`` or ``"random"`` (from scratch), ``"imagenet"`` (torchvision's published
ImageNet weights through its weights API, read from the torch hub cache and downloaded there when missing), or the
path of a local file. The ``*_deep`` ResNets have the deep stem of the segmentation KD codebases (three 3×3
convolutions, 128 channels into layer 1) and load those codebases' ImageNet files' key names.
"""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torchvision.models as tv_models
from torch import nn
from torchvision.models import mobilenet_v2, resnet
from torchvision.models.resnet import BasicBlock

from sstkd.errors import MissingFileError

RESNET_DEPTHS = {
    10: (BasicBlock, [1, 1, 1, 1]),  # a CPU-sized ResNet built from torchvision's blocks
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (resnet.Bottleneck, [3, 4, 6, 3]),
    101: (resnet.Bottleneck, [3, 4, 23, 3]),
}


def dilate_stage(stage: nn.Module, dilation: int, first: int | None = None) -> None:
    """Turn a stride-2 stage into a stride-1 stage with dilated k×k convolutions (in place).

    ``first``: the dilation of the stage's first k×k convolution (default ``dilation``). torchvision's and the KD
    codebases' dilated ResNets keep the previous stage's dilation there (``dilation // 2``); converted weights
    reproduce their outputs only with the same choice.
    """
    convolutions = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    spatial = [m for m in convolutions if m.kernel_size[0] > 1]
    for module in convolutions:
        if module.stride == (2, 2):
            module.stride = (1, 1)
    for index, module in enumerate(spatial):
        d = first if index == 0 and first is not None else dilation
        module.dilation = (d, d)
        module.padding = (d * (module.kernel_size[0] - 1) // 2,) * 2


# torchvision's weights enum per backbone name (ImageNet-1k, the weights its segmentation models start from).
IMAGENET_WEIGHTS = {
    "resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights", "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights", "mobilenetv2": "MobileNet_V2_Weights",
}
FROM_SCRATCH = (None, "", "random")
DOWNLOAD_TIMEOUT_S = 20


def imagenet_weights_file(backbone: str) -> Path:
    """The torch hub cache file of torchvision's ImageNet weights for ``backbone``, downloaded when missing.

    Offline (as on this project's CI) a missing file fails at once, naming the file, the folder to put it in and
    where it comes from, instead of a urllib traceback after a long wait.
    """
    if backbone not in IMAGENET_WEIGHTS:
        raise ValueError(f"backbone_weights: imagenet: torchvision publishes no ImageNet weights for {backbone!r} "
                         f"(it does for {', '.join(IMAGENET_WEIGHTS)}); give the path of a local file instead")
    weights = getattr(tv_models, IMAGENET_WEIGHTS[backbone]).IMAGENET1K_V1
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / Path(weights.url).name
    if path.is_file():
        return path
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urllib would otherwise wait for the OS's connect timeout
    try:
        torch.hub.load_state_dict_from_url(weights.url, model_dir=str(folder), progress=False, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad hash is a RuntimeError
        path.unlink(missing_ok=True)
        raise FileNotFoundError(
            f"backbone_weights: imagenet: {path.name} is not in the torch hub cache and could not be downloaded "
            f"({error}). On a machine with internet access, download {weights.url} and put it at {path} "
            f"(the folder is torch.hub.get_dir()/checkpoints; TORCH_HOME moves it), or set backbone_weights to "
            f"the path of the file") from None
    finally:
        socket.setdefaulttimeout(previous)
    return path


def resolve_backbone_weights(backbone: str, weights: str | Path | None) -> Path | None:
    """The file ``weights`` names for ``backbone``, or None for a backbone trained from scratch."""
    if weights in FROM_SCRATCH:
        return None
    if str(weights) == "imagenet":
        if backbone.endswith("_deep"):
            raise ValueError(f"backbone_weights: imagenet: torchvision publishes no deep-stem weights for "
                             f"{backbone!r}; give the path of the KD codebases' ImageNet file (e.g. CIRKD's "
                             f"{backbone.removesuffix('_deep')}-imagenet.pth)")
        return imagenet_weights_file(backbone)
    return Path(weights)


# The deep stem's flat names in the KD codebases' files (CIRKD / CSAIL ``resnet*-imagenet.pth``: conv1, bn1,
# conv2, bn2, conv3, bn3) → this project's (torchvision's ``conv1`` as a Sequential, ``bn1`` after it).
DEEP_STEM_KEYS = {"conv1.": "conv1.0.", "bn1.": "conv1.1.", "conv2.": "conv1.3.", "bn2.": "conv1.4.",
                  "conv3.": "conv1.6.", "bn3.": "bn1."}


def rename_by_prefix(state: dict, rules) -> tuple[dict, list[str]]:
    """Each key renamed by the first ``(old, new)`` prefix rule it starts with; the keys no rule covers, apart."""
    renamed, unmatched = {}, []
    for key, value in state.items():
        rule = next(((old, new) for old, new in rules if key.startswith(old)), None)
        if rule is None:
            unmatched.append(key)
        else:
            renamed[rule[1] + key[len(rule[0]):]] = value
    return renamed, unmatched


def deep_stem_names(state: dict) -> dict:
    """A deep-stem state dict with the KD codebases' flat stem names renamed to this project's (others as is)."""
    if "conv3.weight" not in state:
        return state
    renamed, others = rename_by_prefix(state, DEEP_STEM_KEYS.items())
    return renamed | {key: state[key] for key in others}


def load_backbone_weights(model: nn.Module, path: str | Path, ignore_prefixes: tuple[str, ...]) -> None:
    """Load a torchvision-format state dict (e.g. ``resnet18-f37072fd.pth``), or a deep-stem one in the KD
    codebases' names, into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"backbone_weights: no file at {path} (the *_deep backbones of the paper envs take the KD codebases' "
            "deep-stem ImageNet files, e.g. resnet101-imagenet.pth / resnet18-imagenet.pth linked from CIRKD's "
            "README, under data/01_raw/weights/; `imagenet` takes torchvision's for a 7x7-stem backbone)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k: v for k, v in deep_stem_names(state).items() if not k.startswith(ignore_prefixes)}
    own = model.state_dict()
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and own[k].shape != v.shape]
    # BatchNorm's counter is absent from files saved before PyTorch 0.4.1 (torchvision's classic ImageNet files, the
    # CSAIL/CIRKD ones); load_state_dict then keeps the model's own, as every KD codebase relies on.
    missing = [k for k in own if k not in state and not k.startswith(ignore_prefixes)
               and not k.endswith(".num_batches_tracked")]
    if mismatched or missing or not state:
        detail = "; ".join(mismatched[:5] + [f"missing {k}" for k in missing[:5]])
        raise ValueError(f"backbone_weights: {path} does not match this backbone ({detail or 'empty file'})")
    model.load_state_dict(state, strict=False)


def deep_stem_resnet(block, layers: list[int]) -> resnet.ResNet:
    """torchvision's ResNet with the deep stem of the KD codebases (ResNet-v1c): three 3×3 convolutions (stride 2,
    64, 64, 128 channels, BN + ReLU between them), BN + ReLU, max-pool, and a layer 1 that takes 128 channels.
    Module names follow those codebases' ImageNet files: ``conv1.{0,3,6}``, ``conv1.{1,4}`` (BN), ``bn1``."""
    net = resnet.ResNet(block, layers)
    net.conv1 = nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.Conv2d(64, 128, 3, stride=1, padding=1, bias=False),
    )
    net.bn1 = nn.BatchNorm2d(128)
    net.inplanes = 128
    net.layer1 = net._make_layer(block, 64, layers[0])  # layers 2-4 take layer 1's output, whatever the stem
    for module in (*net.conv1.modules(), net.bn1, *net.layer1.modules()):
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return net


class ResNetBackbone(nn.Module):
    def __init__(self, depth: int, output_stride: int = 8, weights: str | Path | None = None,
                 deep_stem: bool = False, dilation_scheme: str = "uniform"):
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"backbone depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        block, layers = RESNET_DEPTHS[depth]
        net = deep_stem_resnet(block, layers) if deep_stem else resnet.ResNet(block, layers)
        if weights:
            load_backbone_weights(net, weights, ignore_prefixes=("fc.",))
        halve_first = dilation_scheme == "torchvision"  # see dilate_stage
        if output_stride <= 16:
            d = 2 if output_stride == 16 else 4
            dilate_stage(net.layer4, d, d // 2 if halve_first else None)
        if output_stride == 8:
            dilate_stage(net.layer3, 2, 1 if halve_first else None)
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


def build_backbone(name: str, output_stride: int = 8, weights: str | Path | None = None, width_mult: float = 1.0,
                   dilation_scheme: str = "uniform"):
    """``resnet10|18|34|50|101``, their deep-stem ``resnet*_deep``, or ``mobilenetv2``; ``weights`` as the module
    docstring says; ``dilation_scheme`` (ResNets) ``uniform`` or ``torchvision`` (see :func:`dilate_stage`)."""
    if name == "mobilenetv2" and str(weights) == "imagenet" and width_mult != 1.0:
        raise ValueError(f"backbone_weights: imagenet: torchvision's mobilenetv2 weights are for width_mult 1.0, "
                         f"not {width_mult}")
    weights = resolve_backbone_weights(name, weights)
    depth = name.removeprefix("resnet").removesuffix("_deep")
    if name.startswith("resnet") and depth.isdigit():
        return ResNetBackbone(int(depth), output_stride, weights, deep_stem=name.endswith("_deep"),
                              dilation_scheme=dilation_scheme)
    if name == "mobilenetv2":
        return MobileNetV2Backbone(output_stride, width_mult, weights)
    raise ValueError(f"backbone: unknown name {name!r}; choose resnet10/18/34/50/101(_deep) or mobilenetv2")
