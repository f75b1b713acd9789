"""Backbone pretraining by image classification: this project's stand-in for the papers' ImageNet initialisation.

A plain classification loop in the manner of torchvision's ``references/classification``: the backbone's own
torchvision ResNet (undilated, global average pooling, a linear classifier), SGD with momentum, poly decay, random
crops and colour jitter (no flips: the corpus has orientation classes). What it returns is a torchvision-format
state dict (``conv1`` … ``layer4``, ``fc``) that :func:`sstkd.models.backbones.load_backbone_weights` loads into
the dilated segmentation backbone of the same name, the classifier left out, as ImageNet files are.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torchvision.models import resnet
from tqdm.auto import tqdm

from sstkd.models.backbones import RESNET_DEPTHS, deep_stem_resnet
from sstkd.training.loop import check_warmup, poly_scheduler
from sstkd.training.seeding import epoch_seed, seed_everything

log = logging.getLogger(__name__)


class PretrainingConfig(BaseModel):
    """``pretraining.training``: the classification recipe, the same for every backbone."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    poly_power: float = Field(0.9, ge=0)
    crop_size: int = Field(56, ge=8)
    # Each residual branch's last BatchNorm starts at zero (every block the identity) and the rate warms up
    # linearly over the first epoch: without them a bottleneck ResNet-50 diverged in its first epoch at this rate
    # (loss 9.0) and stayed near chance (11.5% after 15 epochs; the basic-block ResNets trained either way).
    zero_init_residual: bool = True
    warmup_epochs: float = Field(1.0, ge=0)
    brightness: float = Field(0.2, ge=0)  # colour jitter: brightness and contrast factors in [1 - x, 1 + x]
    contrast: float = Field(0.2, ge=0)
    seed: int = 0
    progress: bool = True

    @model_validator(mode="after")
    def _warmup_within_the_schedule(self) -> PretrainingConfig:
        check_warmup(self.epochs, self.warmup_epochs)
        return self


def classification_network(backbone: str, num_classes: int, zero_init_residual: bool = False) -> nn.Module:
    """The torchvision ResNet a segmentation backbone ``backbone`` is built from, with a ``num_classes`` classifier."""
    depth = backbone.removeprefix("resnet").removesuffix("_deep")
    if not (backbone.startswith("resnet") and depth.isdigit() and int(depth) in RESNET_DEPTHS):
        raise ValueError(f"pretraining.backbones: {backbone!r} cannot be pretrained here (ResNets only: "
                         f"resnet{'/'.join(str(d) for d in RESNET_DEPTHS)}, with or without _deep)")
    block, layers = RESNET_DEPTHS[int(depth)]
    network = deep_stem_resnet(block, layers) if backbone.endswith("_deep") else resnet.ResNet(block, layers)
    network.fc = nn.Linear(network.fc.in_features, num_classes)
    if zero_init_residual:  # torchvision's own option, for the deep stem too
        for module in network.modules():
            if isinstance(module, resnet.Bottleneck):
                nn.init.zeros_(module.bn3.weight)
            elif isinstance(module, resnet.BasicBlock):
                nn.init.zeros_(module.bn2.weight)
    return network


def _augmented(images: np.ndarray, config: PretrainingConfig, generator: torch.Generator,
               mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(B, S, S, 3)`` uint8 → ``(B, 3, c, c)`` standardised: one random crop and colour jitter per image."""
    batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    size, crop = batch.shape[-1], min(config.crop_size, batch.shape[-1])
    offsets = torch.randint(0, size - crop + 1, (len(batch), 2), generator=generator)
    crops = torch.stack([image[:, top : top + crop, left : left + crop] for image, (top, left) in zip(batch, offsets)])
    brightness = 1 + (2 * torch.rand(len(batch), 1, 1, 1, generator=generator) - 1) * config.brightness
    contrast = 1 + (2 * torch.rand(len(batch), 1, 1, 1, generator=generator) - 1) * config.contrast
    means = crops.mean(dim=(1, 2, 3), keepdim=True)
    crops = ((crops - means) * contrast + means * brightness).clamp(0, 1)
    return (crops - mean) / std


@torch.no_grad()
def classification_accuracy(network: nn.Module, images: np.ndarray, labels: np.ndarray, mean: torch.Tensor,
                            std: torch.Tensor, batch_size: int = 128) -> float:
    """Top-1 accuracy on whole images (the network pools globally, so no crop is needed)."""
    network.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).permute(0, 3, 1, 2)
        logits = network((batch.float() / 255 - mean) / std)
        correct += int((logits.argmax(1) == torch.from_numpy(labels[start : start + batch_size])).sum())
    return correct / len(images)


def pretrain_backbone(backbone: str, corpus: dict, config: PretrainingConfig, name: str | None = None,
                      callbacks: Sequence[Callable[[int, dict], None]] = ()) -> tuple[dict, list[dict]]:
    """Train ``backbone`` to classify ``corpus["train"]`` and return ``(torchvision-format state dict, history)``.

    ``corpus``: ``{"train"|"val": {"images": (N, S, S, 3) uint8, "labels": (N,) int}}``. Deterministic for a given
    thread count: every epoch's order and augmentation derive from ``(seed, epoch)``. ``callbacks(epoch, record)``
    after each epoch (MLflow logging).
    """
    name = name or backbone
    train, val = corpus["train"], corpus["val"]
    num_classes = int(max(train["labels"].max(), val["labels"].max())) + 1
    seed_everything(config.seed)
    network = classification_network(backbone, num_classes, config.zero_init_residual)
    pixels = train["images"].reshape(-1, 3) / 255.0
    mean = torch.tensor(pixels.mean(0), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pixels.std(0), dtype=torch.float32).view(1, 3, 1, 1)
    steps = len(train["images"]) // config.batch_size
    if steps < 1:
        raise ValueError(f"{name}: the corpus has {len(train['images'])} training images, fewer than one batch of "
                         f"{config.batch_size}; lower pretraining.training.batch_size")
    optimizer = torch.optim.SGD(network.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = poly_scheduler(optimizer, steps, config.epochs, config.poly_power, config.warmup_epochs)
    history = []
    for epoch in range(config.epochs):
        generator = torch.Generator().manual_seed(epoch_seed(config.seed, epoch))
        order = torch.randperm(len(train["images"]), generator=generator).numpy()
        network.train()
        started, running = time.perf_counter(), 0.0
        for step in tqdm(range(steps), desc=f"{name} {epoch + 1}/{config.epochs}", leave=False,
                         disable=None if config.progress else True, unit="step"):
            index = np.sort(order[step * config.batch_size : (step + 1) * config.batch_size])
            images = _augmented(train["images"][index], config, generator, mean, std)
            loss = F.cross_entropy(network(images), torch.from_numpy(train["labels"][index]))
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"{name}: the pretraining loss became non-finite at epoch {epoch + 1}, "
                                         f"step {step}; lower pretraining.training.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += float(loss.detach())
        record = {"epoch": epoch + 1, "loss": running / steps,
                  "val_accuracy": classification_accuracy(network, val["images"], val["labels"], mean, std),
                  "images_per_second": steps * config.batch_size / (time.perf_counter() - started)}
        history.append(record)
        log.info("%s epoch %d/%d: loss %.4f, val accuracy %.4f", name, epoch + 1, config.epochs, record["loss"],
                 record["val_accuracy"])
        for callback in callbacks:
            callback(epoch + 1, record)
    state = {key: value.detach().clone() for key, value in network.state_dict().items()}
    return state, history
