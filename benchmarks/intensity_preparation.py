"""Which feature preparation gives DTIEM a meaningful intensity? Perturbation and scale checks, side by side.

    python benchmarks/intensity_preparation.py     # after `kedro run` (uses the teacher and test split in data/)

For each preparation (per-channel standardisation = the old, void one; per-channel RMS scaling; joint
standardisation over C·H·W; raw features) it prints, on random post-ReLU features and on the teacher's stage-1
features of test images: the norm of the image's mean feature relative to the features' RMS, and the Pearson
correlation of the intensity maps of ``x`` and ``x · (1 + 1e-6)``. An intensity worth distilling has a
non-vanishing mean feature and a correlation of 1.000.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sstkd.data.transforms import normalized_batch
from sstkd.distill.contourlet import standardize_channels
from sstkd.distill.texture_statistics import rms_scale_channels, standardize_jointly, texture_intensity
from sstkd.training.checkpoint import load_checkpoint
from sstkd.training.recipe import network_from_payload

PREPARATIONS = {"per-channel standardisation (old)": standardize_channels, "per-channel RMS (no centring)":
                rms_scale_channels, "joint standardisation over C·H·W": standardize_jointly, "raw": lambda x: x}


def _row(name: str, features: torch.Tensor, prepare) -> str:
    prepared, perturbed = prepare(features), prepare(features * (1 + 1e-6))
    mean_norm = prepared.flatten(2).mean(2).norm(dim=1) / prepared.square().mean(dim=(1, 2, 3)).sqrt()
    a, b = texture_intensity(prepared).flatten(), texture_intensity(perturbed).flatten()
    correlation = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    return f"| {name} | {float(mean_norm.mean()):.2e} | {correlation:.4f} |"


@torch.no_grad()
def main(root: Path = Path("data"), images: int = 32) -> None:
    torch.manual_seed(0)
    sources = {"random post-ReLU (2, 16, 32, 32)": torch.relu(torch.randn(2, 16, 32, 32)) + 0.05}
    teacher_path = root / "06_models/teacher.pt"
    if teacher_path.is_file():
        payload = load_checkpoint(teacher_path)
        test = np.load(root / "05_model_input/cache/test/images.npy", mmap_mode="r")[:images]
        network = network_from_payload(payload).eval()
        sources[f"teacher stage 1, {images} test images"] = network(
            normalized_batch(test, payload["normalization"])).low_level
    for source, features in sources.items():
        print(f"\n{source}\n\n| preparation | ‖mean feature‖ / RMS | corr(S(x), S(x·(1+1e-6))) |\n|---|---|---|")
        for name, prepare in PREPARATIONS.items():
            print(_row(name, features, prepare))


if __name__ == "__main__":
    main()
