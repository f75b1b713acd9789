"""Texture-transfer diagnostics: do a student's low-level features end up closer to the teacher's?

SSTKD claims that distilling texture moves the student's stage-1 features towards the teacher's. These
measures check it on the evaluation split, from stage-1 features only, for any pair of networks — independent
of channel counts and of any trained adapter (the adapters live in the losses, not in the networks):

* **directional energy profile**: contourlet energy per level × direction, summed over channels (each
  channel standardised, as ``L_str`` sees it), normalised to sum 1 per image, averaged over images; the
  distance to the teacher's is the **L1** distance of the profiles (twice the total-variation distance, in [0, 2]);
* **DTIEM intensity statistics** (features RMS-scaled per channel, as ``L_sta`` sees them): per quantisation
  level count ``N``, the mean L1 between the equalised intensity maps of the same pixels, and the 1-D Wasserstein
  distance between the denoised histograms (in level units / N, as in ``L_sta``);
* **linear CKA** (Kornblith et al., 2019) between the network's and the teacher's stage-1 features at the same
  pixels: 1 for identical representations, invariant to orthogonal transforms and isotropic scale;
* **linear probe**: a multinomial logistic regression on the frozen stage-1 features (standardised per channel
  with the training pixels' statistics) predicting each pixel's class, fitted by full-batch L-BFGS on a fixed
  random subsample of training pixels, scored on every labelled pixel of the evaluation split: how much class
  (i.e. texture) information a network's low-level features hold linearly. A wider network's probe has more
  inputs, so each network is also probed at the narrowest network's width, on its leading principal components
  (``probe_accuracy_at_width``): a teacher's lead there is not its width alone.

Everything is plain PyTorch and deterministic for a given seed.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from sstkd.data.sources import IGNORE_INDEX
from sstkd.data.transforms import normalized_batch
from sstkd.distill.contourlet import ContourletDecomposition, standardize_channels
from sstkd.distill.texture_statistics import DenoisedTextureEqualization, rms_scale_channels
from sstkd.evaluation.metrics import ConfusionMatrix


class TextureTransferConfig(BaseModel):
    """``evaluation.texture_transfer`` parameters."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    train_images: int = Field(64, ge=1)       # training images whose stage-1 pixels the probe is fitted on
    test_images: int | None = Field(None, ge=1)  # evaluation images measured (evenly spaced); None: all. Stage-1
                                                 # features of every model are held at once: cap it at paper sizes
    probe_pixels: int = Field(8192, ge=16)    # random subsample of those pixels (fixed seed)
    probe_steps: int = Field(60, ge=1)        # L-BFGS iterations, full batch
    probe_weight_decay: float = Field(1e-4, ge=0)
    cka_pixels: int = Field(4096, ge=16)      # evaluation pixels CKA is computed on (the same for every model)
    levels: int = Field(3, ge=1)              # contourlet pyramid levels of the directional profile
    directions: int = Field(8, ge=1)
    border: int = Field(2, ge=0)              # stage-1 pixels dropped at each edge (zero-padding responses)
    quantization_levels: list[int] = [8, 16, 32]
    batch_size: int = Field(32, ge=1)
    seed: int = 0


@torch.no_grad()
def stage1_features(network: nn.Module, images: np.ndarray, normalization: dict, batch_size: int = 32,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 images → the backbone's stage-1 features ``(N, C, H/4, W/4)`` on the CPU."""
    network = network.to(device).eval()
    chunks = [network.stage1_features(normalized_batch(images[start : start + batch_size], normalization, device))
              for start in range(0, len(images), batch_size)]
    return torch.cat(chunks).float().cpu()


def labels_at_feature_grid(masks: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)`` masks → ``(N, h, w)`` labels of the pixel at the centre of each feature cell."""
    masks = torch.as_tensor(np.asarray(masks)).long()
    height, width = masks.shape[-2:]
    rows = ((torch.arange(size[0]) + 0.5) * height / size[0]).long().clamp(max=height - 1)
    cols = ((torch.arange(size[1]) + 0.5) * width / size[1]).long().clamp(max=width - 1)
    return masks[:, rows][:, :, cols]


def _interior(features: torch.Tensor, border: int) -> torch.Tensor:
    if border == 0 or min(features.shape[-2:]) <= 2 * border + 4:
        return features
    return features[..., border:-border, border:-border]


@torch.no_grad()
def directional_energy_profile(features: torch.Tensor, levels: int = 3, directions: int = 8,
                               border: int = 2) -> torch.Tensor:
    """``(N, C, h, w)`` → ``(levels, directions)``: each image's contourlet energy per level × direction, summed
    over (standardised) channels and normalised to sum 1, averaged over images."""
    decomposition = ContourletDecomposition(levels, directions)
    bands, _ = decomposition.pyramid(standardize_channels(_interior(features, border)))
    energy = torch.stack([decomposition.filter_bank.energy(band).sum(dim=2) / band[0, 0].numel()
                          for band in bands], dim=1)  # (N, levels, D)
    energy = energy / energy.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return energy.mean(dim=0)


def intensity_statistics(features: torch.Tensor, quantization_levels=(8, 16, 32), border: int = 2):
    """DTIEM statistics of ``(N, C, h, w)`` features as ``L_sta`` prepares them (per-channel RMS scaling)."""
    return DenoisedTextureEqualization(tuple(quantization_levels))(rms_scale_channels(_interior(features, border)))


def intensity_distances(statistics, teacher_statistics) -> dict[int, dict[str, float]]:
    """Per quantisation level count: mean L1 of equalised intensities, Wasserstein distance of histograms."""
    distances = {}
    for s, t in zip(statistics, teacher_statistics):
        levels = s.cdf.shape[1]
        wasserstein = (s.denoised.cumsum(1) - t.denoised.cumsum(1)).abs().sum(1).mean() / levels
        distances[levels] = {"equalized_l1": float((s.equalized - t.equalized).abs().mean()),
                             "histogram_w1": float(wasserstein)}
    return distances


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of ``(n, p)`` and ``(n, q)`` representations of the same ``n`` samples (``p ≠ q`` allowed)."""
    x = x.double() - x.double().mean(dim=0)
    y = y.double() - y.double().mean(dim=0)
    cross = (y.T @ x).square().sum()
    norms = (x.T @ x).square().sum().sqrt() * (y.T @ y).square().sum().sqrt()
    return float(cross / norms.clamp_min(1e-30))


def pixels_of(features: torch.Tensor) -> torch.Tensor:
    """``(N, C, h, w)`` → ``(N·h·w, C)``, in the row order of ``labels.flatten()``."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 num_classes: int, steps: int = 60, weight_decay: float = 1e-4, seed: int = 0) -> dict[str, float]:
    """Multinomial logistic regression ``(n, C)`` → class, full-batch L-BFGS; test pixel accuracy and mIoU.

    Features are standardised per channel with the *training* pixels' statistics. Deterministic for a seed.
    """
    generator = torch.Generator().manual_seed(seed)
    train_x, test_x = _standardised(train_x, test_x)
    linear = nn.Linear(train_x.shape[1], num_classes)
    with torch.no_grad():
        linear.weight.normal_(0, 0.01, generator=generator)
        linear.bias.zero_()
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=steps, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(train_x), train_y) + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    with _one_thread():
        optimizer.step(closure)
    with torch.no_grad():
        prediction = linear(test_x).argmax(dim=1)
    matrix = ConfusionMatrix(num_classes)
    matrix.update(prediction, test_y)
    scores = matrix.compute()
    return {"accuracy": scores["pixel_accuracy"], "miou": scores["miou"]}


def _standardised(train_x: torch.Tensor, test_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both pixel sets standardised per channel with the *training* pixels' statistics (test never informs them)."""
    mean, std = train_x.mean(dim=0), train_x.std(dim=0).clamp_min(1e-6)
    return (train_x - mean) / std, (test_x - mean) / std


def leading_components(train_x: torch.Tensor, test_x: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both ``(n, C)`` pixel sets projected onto the ``width`` leading principal components of the training pixels,
    after standardising each channel with the training pixels' statistics (so that no channel leads by its scale
    alone). The probe standardises the component scores again, as it does any input."""
    train_x, test_x = _standardised(train_x, test_x)
    with _one_thread():  # the reason the probe runs on one thread holds for this decomposition's small products too
        _, _, components = torch.linalg.svd(train_x, full_matrices=False)  # train_x is centred already
    basis = components[:width].T
    return train_x @ basis, test_x @ basis


@contextmanager
def _one_thread():
    """A full-batch probe is hundreds of small matrix products: on a busy 2-core machine two threads made it
    about 15× slower than one (0.43 s vs 0.027 s for 8192 pixels × 64 channels, 60 steps), so it runs on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _sample(count: int, population: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(population, generator=generator)[: min(count, population)]


def texture_transfer(features: dict[str, dict[str, torch.Tensor]], train_masks: np.ndarray, test_masks: np.ndarray,
                     num_classes: int, config: TextureTransferConfig, teacher: str = "teacher") -> dict[str, dict]:
    """All diagnostics for every model. ``features[model]`` holds stage-1 ``"train"`` and ``"test"`` features
    ``(N, C, h, w)``; the masks are those of the same images. Returns, per model, JSON-ready numbers."""
    generator = torch.Generator().manual_seed(config.seed)
    reference = features[teacher]["test"]
    size = tuple(reference.shape[-2:])
    train_labels = labels_at_feature_grid(train_masks, tuple(features[teacher]["train"].shape[-2:])).flatten()
    test_labels = labels_at_feature_grid(test_masks, size).flatten()
    labelled_train = torch.nonzero(train_labels != IGNORE_INDEX).squeeze(1)
    probe_rows = labelled_train[_sample(config.probe_pixels, len(labelled_train), generator)]
    labelled_test = torch.nonzero(test_labels != IGNORE_INDEX).squeeze(1)
    cka_rows = labelled_test[_sample(config.cka_pixels, len(labelled_test), generator)]

    teacher_profile = directional_energy_profile(reference, config.levels, config.directions, config.border)
    teacher_stats = intensity_statistics(reference, config.quantization_levels, config.border)
    teacher_pixels = pixels_of(reference)[cka_rows]
    width = min(int(feature["train"].shape[1]) for feature in features.values())

    def probe_on(train_x: torch.Tensor, test_x: torch.Tensor) -> dict[str, float]:
        return linear_probe(train_x, train_labels[probe_rows], test_x, test_labels[labelled_test], num_classes,
                            config.probe_steps, config.probe_weight_decay, config.seed)

    results = {}
    for model, feature in features.items():
        test = feature["test"]
        if tuple(test.shape[-2:]) != size:
            raise ValueError(f"{model}: stage-1 features {tuple(test.shape[-2:])} differ from the teacher's {size}")
        profile = directional_energy_profile(test, config.levels, config.directions, config.border)
        per_level = intensity_distances(intensity_statistics(test, config.quantization_levels, config.border),
                                        teacher_stats)
        train_pixels, test_pixels = pixels_of(feature["train"])[probe_rows], pixels_of(test)[labelled_test]
        probe = probe_on(train_pixels, test_pixels)
        at_width = probe if test.shape[1] == width else probe_on(*leading_components(train_pixels, test_pixels, width))
        results[model] = {
            "channels": int(test.shape[1]),
            "profile": profile.tolist(),
            "profile_l1": float((profile - teacher_profile).abs().sum()),
            "intensity_l1": float(np.mean([d["equalized_l1"] for d in per_level.values()])),
            "histogram_w1": float(np.mean([d["histogram_w1"] for d in per_level.values()])),
            "per_quantization": {str(n): d for n, d in per_level.items()},
            "cka": linear_cka(pixels_of(test)[cka_rows], teacher_pixels),
            "probe_accuracy": probe["accuracy"],
            "probe_miou": probe["miou"],
            "probe_width": width,
            "probe_accuracy_at_width": at_width["accuracy"],
        }
    return results
