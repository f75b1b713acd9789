"""The served form of a trained network: an MLflow pyfunc model that maps raw images to label maps.

``predict`` takes uint8 RGB images ``(N, H, W, 3)`` of any batch size and image size, normalises them with the
model's own training statistics and returns label maps ``(N, H, W)``. The model carries its class names and
normalisation as metadata, and the ``sstkd`` code it needs (``code_paths``), so its requirements are installable
from a public index. Nothing here needs Kedro.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow.pyfunc
import numpy as np

# The distributions the served code imports when it loads and predicts (sstkd itself travels with the model as
# code; MLflow adds itself). tests/test_serving.py checks the list against those imports and requirements.lock.
SERVING_PACKAGES = ("torch", "torchvision", "numpy", "pydantic", "tqdm")


class SegmentationModel(mlflow.pyfunc.PythonModel):
    """uint8 images ``(N, H, W, 3)`` (or one ``(H, W, 3)``) → label maps ``(N, H, W)`` (uint8 class ids)."""

    def load_context(self, context) -> None:
        from sstkd.training.checkpoint import load_checkpoint
        from sstkd.training.recipe import network_from_payload

        payload = load_checkpoint(context.artifacts["model"])
        self.network = network_from_payload(payload, source="logged model").eval()
        self.normalization = payload["normalization"]
        self.class_names = payload.get("class_names")

    def predict(self, context, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        from sstkd.evaluation.evaluate import predict_labels

        images = np.asarray(model_input)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 RGB images (N, H, W, 3), got an array of shape {images.shape}")
        return predict_labels(self.network, images.astype(np.uint8), self.normalization)


def requirements() -> list[str]:
    """``name==version`` of the serving packages installed here (none of them is sstkd: it ships as code)."""
    pins = []
    for name in SERVING_PACKAGES:
        try:
            pins.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def sstkd_code_path() -> str:
    return str(Path(__file__).resolve().parent)


def model_code_file() -> str:
    """The file MLflow stores as the model's code (models from code: nothing is pickled)."""
    return str(Path(__file__).resolve().with_name("served_model.py"))
