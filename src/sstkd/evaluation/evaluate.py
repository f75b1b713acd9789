"""Evaluate a trained network on a split: region, boundary, and cost metrics."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from sstkd.data.ragged import item_sizes, same_size_batches, stacked
from sstkd.data.transforms import normalized_batch
from sstkd.evaluation.inference import predict_logits
from sstkd.evaluation.metrics import BoundaryScores, ConfusionMatrix


def _batches(images, masks, batches: list, normalization: dict, device):
    """The images and masks of each batch of indices (of one size: a ragged split is seen at every image's own)."""
    for indices in batches:
        yield (normalized_batch(stacked(images, indices), normalization, device),
               torch.from_numpy(stacked(masks, indices)).long().to(device))


@torch.no_grad()
def evaluate_network(network: nn.Module, images: np.ndarray, masks: np.ndarray, num_classes: int,
                     normalization: dict, batch_size: int = 8, window=None, overlap: float = 1 / 3,
                     flip: bool = False, scales=(1.0,), boundary_radius: int = 2,
                     device: torch.device | str = "cpu", name: str = "model") -> dict:
    """mIoU, per-class IoU, pixel/mean accuracy, boundary IoU/F-score and the confusion matrix.

    ``images`` and ``masks`` stacked or ragged (:mod:`sstkd.data.ragged`): the prediction of each image is made and
    scored at its own size, so the confusion matrix is the one of one-at-a-time evaluation.
    """
    network = network.to(device).eval()
    matrix = ConfusionMatrix(num_classes, device)
    boundary = BoundaryScores(num_classes, boundary_radius, device)
    batches = same_size_batches(item_sizes(images), batch_size)
    for batch, target in tqdm(_batches(images, masks, batches, normalization, device), total=len(batches),
                              desc=f"evaluating {name}", leave=False,
                              disable=None):  # None: no bar off a terminal (log files, CI)
        prediction = predict_logits(network, batch, window=window, overlap=overlap, flip=flip,
                                    scales=tuple(scales)).argmax(1)
        matrix.update(prediction, target)
        boundary.update(prediction, target)
    return matrix.compute() | boundary.compute()


@torch.no_grad()
def predict_labels(network: nn.Module, images: np.ndarray, normalization: dict, window=None,
                   device: torch.device | str = "cpu") -> np.ndarray:
    network = network.to(device).eval()
    batch = normalized_batch(images, normalization, device)
    return predict_logits(network, batch, window=window).argmax(1).cpu().numpy().astype(np.uint8)


@torch.no_grad()
def network_cost(network: nn.Module, height: int, width: int, runs: int = 20, warmup: int = 3) -> dict:
    """Parameters, GFLOPs of one forward pass (torch's FLOP counter; 1 MAC = 2 FLOPs) and CPU latency: the median
    of ``runs`` timed passes after ``warmup`` untimed ones (one pass is one noisy sample on a shared CPU)."""
    network = network.cpu().eval()
    sample = torch.zeros(1, 3, height, width)
    counter = FlopCounterMode(display=False)
    with counter:
        network(sample)
    for _ in range(warmup):
        network(sample)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        network(sample)
        timings.append(time.perf_counter() - started)
    return {
        "params_millions": sum(p.numel() for p in network.parameters()) / 1e6,
        "gflops": counter.get_total_flops() / 1e9,
        "cpu_latency_ms": 1000 * float(np.median(timings)),
        "latency_input": f"1x3x{height}x{width}",
        "latency_threads": torch.get_num_threads(),
    }
