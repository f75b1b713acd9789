"""Teachers users already have, converted into this project's networks (``teacher.checkpoint_format``).

* ``torchvision``: ``deeplabv3_resnet101`` / ``deeplabv3_resnet50`` state dicts (e.g. the COCO-with-VOC-labels
  file ``deeplabv3_resnet101_coco-586e9e4e.pth``): ``backbone.*`` (a 7×7-stem ResNet at output stride 8),
  ``classifier.0`` (ASPP), ``classifier.1/2/4`` (3×3 conv, BN, classifier), ``aux_classifier.0/1/4``; and
  ``fcn_resnet101`` / ``fcn_resnet50`` (``classifier.0/1/4``: 3×3 conv to 512, BN, classifier; ``head: fcn``). Input: RGB
  in [0, 1] standardised by ImageNet's mean and std; 21 VOC classes (``__background__`` first).
* ``cirkd``: CIRKD's DeepLabV3 (winycg/CIRKD, CVPR-2022 code, e.g. ``deeplabv3_resnet101_citys_best_model.pth``):
  ``pretrained.*`` (a deep-stem ResNet-v1b with flat stem names conv1/bn1/conv2/bn2/conv3/bn3),
  ``head.aspp.b0..b4`` and ``head.aspp.project``, ``head.block.0/1/4``, ``auxlayer.block.0/1/4``. Input: BGR,
  0–255, minus the Caffe mean (104.01, 116.67, 122.68), no scaling. No class names: the data's, by count.

Each becomes an sstkd payload whose network has the source's architecture (``dilation_scheme: torchvision``:
a dilated stage's first 3×3 conv keeps the previous dilation, as both sources) and an input adapter that maps
this project's standardised input to the source's input space, so the converted teacher sees what it was
trained on. The one remaining difference: CIRKD upsamples its logits with ``align_corners=True`` (tiny changes at
pixel level, none in the stride-8 logits).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from sstkd.data.sources import VOC_CLASSES
from sstkd.models.backbones import DEEP_STEM_KEYS, rename_by_prefix

FORMATS = ("sstkd", "torchvision", "cirkd")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)


def _renamed(state: dict, rules: list[tuple[str, str]], ignore: tuple[str, ...], source: str) -> dict:
    """Every key renamed by the first rule whose prefix it starts with; a key no rule covers is an error."""
    out, unknown = rename_by_prefix({k: v for k, v in state.items() if not k.startswith(ignore)}, rules)
    if unknown:
        raise ValueError(f"{source}: keys this converter does not know: {', '.join(unknown[:6])}"
                         f"{' ...' if len(unknown) > 6 else ''}")
    return out


def torchvision_state_dict(state: dict, source: str = "checkpoint", head: str = "deeplabv3") -> dict:
    """torchvision's ``deeplabv3_*`` (``head="deeplabv3"``) or ``fcn_*`` (``head="fcn"``) keys → this project's."""
    backbone = [("backbone.conv1.", "backbone.stage1.0."), ("backbone.bn1.", "backbone.stage1.1."),
                ("backbone.layer1.", "backbone.stage1.4."), ("backbone.layer", "backbone.layer")]
    aux = [("aux_classifier.0.", "aux_head.block.0.0."), ("aux_classifier.1.", "aux_head.block.0.1."),
           ("aux_classifier.4.", "aux_head.block.2.")]
    if head == "fcn":
        classifier = [("classifier.0.", "head.fuse.0."), ("classifier.1.", "head.fuse.1."),
                      ("classifier.4.", "head.classifier.1.")]
    else:
        classifier = [("classifier.0.", "head.aspp."), ("classifier.1.", "head.fuse.0."),
                      ("classifier.2.", "head.fuse.1."), ("classifier.4.", "head.classifier.")]
    return _renamed(state, backbone + classifier + aux, ("backbone.fc.",), source)


def cirkd_state_dict(state: dict, source: str = "checkpoint") -> dict:
    # The stem in torchvision's names (conv1 a Sequential, bn1), then in this backbone's (stage1.0, stage1.1).
    in_stage1 = {"conv1.": "backbone.stage1.0.", "bn1.": "backbone.stage1.1."}
    stem = [(f"pretrained.{flat}", next(in_stage1[p] + own[len(p):] for p in in_stage1 if own.startswith(p)))
            for flat, own in DEEP_STEM_KEYS.items()]
    rules = [*stem, ("pretrained.layer1.", "backbone.stage1.4."), ("pretrained.layer", "backbone.layer"),
             ("head.aspp.b0.", "head.aspp.convs.0."),
             *[(f"head.aspp.b{k}.block.", f"head.aspp.convs.{k}.") for k in (1, 2, 3)],
             ("head.aspp.b4.gap.", "head.aspp.convs.4."), ("head.aspp.project.", "head.aspp.project."),
             ("head.block.0.", "head.fuse.0."), ("head.block.1.", "head.fuse.1."), ("head.block.4.", "head.classifier."),
             ("auxlayer.block.0.", "aux_head.block.0.0."), ("auxlayer.block.1.", "aux_head.block.0.1."),
             ("auxlayer.block.4.", "aux_head.block.2.")]
    return _renamed(state, rules, ("pretrained.fc.",), source)


def input_adapter_state(data_mean, data_std, source_format: str) -> dict[str, torch.Tensor]:
    """Buffers of :class:`~sstkd.models.segmenter.InputAdapter` from this project's input
    ``y = (255·r − 255·μ) / (255·σ)`` (r in [0, 1], RGB) to ``source_format``'s."""
    mean, std = torch.tensor(data_mean, dtype=torch.float32), torch.tensor(data_std, dtype=torch.float32)
    if source_format == "torchvision":  # (r − m) / s  =  y·σ/s + (μ − m)/s
        m, s = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        return {"order": torch.arange(3), "scale": std / s, "shift": (mean - m) / s}
    if source_format == "cirkd":  # BGR channel c' = 255·r[2−c'] − caffe[c']  =  y[2−c']·255σ + 255μ − caffe
        order = torch.tensor([2, 1, 0])
        return {"order": order, "scale": 255 * std[order], "shift": 255 * mean[order] - torch.tensor(CAFFE_BGR_MEAN)}
    raise ValueError(f"no input space known for format {source_format!r}")


def _unwrap(raw, source: str) -> dict:
    for key in ("state_dict", "model"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ValueError(f"{source}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in raw.items()}  # saved from DDP


def convert_teacher(path: str | Path, source_format: str, network: dict, dataset_info: dict,
                    statistics: dict) -> dict:
    """An sstkd teacher payload from another project's checkpoint file, checked against ``network`` (the
    teacher's configured architecture) and the data's classes."""
    from sstkd.models.segmenter import build_network  # imports backbones, as this module does
    from sstkd.training.recipe import fingerprint_of

    source = f"teacher.checkpoint ({path}, format {source_format})"
    if source_format not in FORMATS[1:]:
        raise ValueError(f"{source}: format must be one of {', '.join(FORMATS)}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{source}: no file")
    heads = ("deeplabv3", "fcn") if source_format == "torchvision" else ("deeplabv3",)
    if network.get("head") not in heads or network.get("output_stride") != 8:
        raise ValueError(f"{source}: this format's networks are {' or '.join(heads)} at output stride 8; "
                         f"teacher.network has head {network.get('head')!r}, output_stride "
                         f"{network.get('output_stride')} (with another stride every shape would still match and "
                         "the converted teacher would compute something else)")
    content = Path(path).read_bytes()
    state = _unwrap(torch.load(io.BytesIO(content), map_location="cpu", weights_only=True), source)
    if source_format == "torchvision":
        fcn_file = state.get("classifier.0.weight") is not None and state["classifier.0.weight"].dim() == 4
        if fcn_file != (network["head"] == "fcn"):
            raise ValueError(f"{source}: the file has {'an FCN' if fcn_file else 'a DeepLabV3'} head, teacher.network "
                             f"a {network['head']} head; set teacher.network.head to {'fcn' if fcn_file else 'deeplabv3'}")
        converted = torchvision_state_dict(state, source, network["head"])
    else:
        converted = cirkd_state_dict(state, source)
    classifier = converted.get("head.classifier.weight", converted.get("head.classifier.1.weight"))  # FCN: after dropout
    num_classes = int(classifier.shape[0]) if classifier is not None else 0
    classes = list(dataset_info["classes"])
    if source_format == "torchvision":
        # torchvision's _VOC_CATEGORIES, in the VOC layout's order and names ("background" for "__background__")
        names = VOC_CLASSES if num_classes == len(VOC_CLASSES) else None
    else:
        names = classes if num_classes == len(classes) else None  # CIRKD files carry no names
    expected = dict(network) | {"backbone_weights": None, "input_adapter": True, "dilation_scheme": "torchvision",
                                "aux_head": any(k.startswith("aux_head.") for k in converted)}
    target = build_network(expected, max(num_classes, 1))
    converted |= {f"input_adapter.{k}": v for k, v in
                  input_adapter_state(statistics["mean"], statistics["std"], source_format).items()}
    own = target.state_dict()
    missing = sorted(set(own) - set(converted))
    wrong = [f"{k}: file {tuple(v.shape)} vs teacher.network {tuple(own[k].shape)}"
             for k, v in converted.items() if k in own and v.shape != own[k].shape]
    extra = sorted(set(converted) - set(own))
    if missing or wrong or extra:
        details = wrong[:4] + [f"missing {k}" for k in missing[:4]] + [f"unexpected {k}" for k in extra[:4]]
        raise ValueError(f"{source} does not fit teacher.network {network} ({'; '.join(details)}); set "
                         f"teacher.network to the file's architecture (e.g. deeplabv3, resnet101"
                         f"{'_deep' if source_format == 'cirkd' else ''}, output_stride 8, head_channels "
                         f"{converted['head.fuse.0.weight'].shape[0] if 'head.fuse.0.weight' in converted else '?'})")
    target.load_state_dict(converted)
    # Students record their teacher's fingerprint: another file (or format, or input statistics) is another teacher.
    fingerprint = fingerprint_of("converted", source_format, hashlib.sha256(content).hexdigest(),
                                 target.config.identity(), statistics["mean"], statistics["std"])
    return {"network": target.config.model_dump(), "num_classes": num_classes, "class_names": names,
            "state_dict": target.state_dict(), "source_file": str(path), "source_format": source_format,
            "fingerprint": fingerprint}
