"""A logged model serves: loaded back through MLflow, it labels raw uint8 images of any batch and size."""

from concurrent.futures import ThreadPoolExecutor

import mlflow
import numpy as np
import pytest
import torch

from sstkd import tracking
from sstkd.evaluation.evaluate import predict_labels
from sstkd.models.segmenter import NetworkConfig, build_network

CLASSES = ["stripes", "grain", "smooth"]


@pytest.fixture()
def logged_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    torch.manual_seed(0)
    config = NetworkConfig(head="pspnet", backbone="resnet10", output_stride=16, head_channels=16, aux_head=True)
    network = build_network(config, len(CLASSES)).eval()
    payload = {"name": "sstkd", "network": config.model_dump(), "num_classes": len(CLASSES), "class_names": CLASSES,
               "normalization": {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}, "fingerprint": "f" * 16}
    mlflow.set_experiment("sstkd")

    def log() -> str:
        with mlflow.start_run() as run:
            tracking.log_segmentation_model(network, payload, registered_name="sstkd-generic-sstkd")
        return run.info.run_id

    # MLflow's active-run stack is per thread: an in-process Kedro session of another test may leave its run open
    with ThreadPoolExecutor(1) as pool:
        run_id = pool.submit(log).result()
    yield f"runs:/{run_id}/model", network, payload
    mlflow.set_tracking_uri(None)


def test_a_logged_model_labels_two_images_of_another_size_through_pyfunc(logged_model):
    uri, network, payload = logged_model
    images = np.random.default_rng(0).integers(0, 256, (2, 72, 88, 3), dtype=np.uint8)  # not the 96x96 crop
    model = mlflow.pyfunc.load_model(uri)
    labels = model.predict(images)
    assert labels.shape == (2, 72, 88) and labels.max() < len(CLASSES)
    np.testing.assert_array_equal(labels, predict_labels(network, images, payload["normalization"]))
    assert model.predict(images[:1]).shape == (1, 72, 88)  # any batch size
    metadata = model.metadata.metadata
    assert metadata["class_names"] == CLASSES and metadata["normalization"] == payload["normalization"]
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, -1, -1, 3)


def test_a_logged_model_is_registered_by_dataset_and_method_with_installable_requirements(logged_model, tmp_path):
    uri, _, _ = logged_model
    versions = mlflow.MlflowClient().search_model_versions("name = 'sstkd-generic-sstkd'")
    assert len(versions) == 1
    requirements = mlflow.pyfunc.get_model_dependencies(uri)
    with open(requirements) as stream:
        pins = stream.read()
    assert "sstkd==" not in pins and "torch==" in pins
    local = mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "served"))
    assert any(path.name == "sstkd" for path in (tmp_path / "served" / "model" / "code").iterdir()), local
