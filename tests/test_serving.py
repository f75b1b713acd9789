"""A logged model serves: loaded back through MLflow, it labels raw uint8 images of any batch and size; its
requirements are exactly what it imports, pinned as the project pins them, and its environment builds from them."""

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[1]
PREDICT = """
import json, sys
import mlflow.pyfunc, numpy as np
model = mlflow.pyfunc.load_model(sys.argv[1])
labels = model.predict(np.random.default_rng(0).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8))
served = [m for m in sys.modules if m == "sstkd" or m.startswith("sstkd.")]
print(json.dumps({"labels": labels.tolist(), "files": [sys.modules[m].__file__ for m in served],
                  "torch": __import__("torch").__file__}))
"""


def _requirements(uri: str) -> dict[str, str]:
    lines = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text().split()
    return dict(line.partition("==")[::2] for line in lines)


def _imported_distributions(files: list[str]) -> set[str]:
    """The third-party distributions the given modules import (top level or inside functions)."""
    import ast
    from importlib.metadata import packages_distributions

    names = set()
    for file in files:
        for node in ast.walk(ast.parse(Path(file).read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    owners = packages_distributions()
    third_party = names - set(sys.stdlib_module_names) - {"sstkd", "__future__"}
    return {owners[name][0].lower() for name in third_party}


def test_the_requirements_are_what_the_served_code_imports_pinned_as_the_lock_pins_them(logged_model):
    uri, _, _ = logged_model
    pins = _requirements(uri)
    assert "cityscapesscripts" not in pins and "sstkd" not in pins
    run = subprocess.run([sys.executable, "-c", PREDICT, uri], capture_output=True, text=True, check=True)
    loaded = json.loads(run.stdout.splitlines()[-1])["files"]
    served_code = [file for file in loaded if "/code/sstkd/" in file]  # the copy that travels with the model
    assert served_code and len(served_code) == len(loaded), loaded
    imported = _imported_distributions(served_code)
    imported = {"mlflow" if name.startswith("mlflow") else name for name in imported}
    assert imported == set(pins), (imported, pins)
    lock = dict(re.findall(r"^([a-z0-9_.-]+)==([^\s]+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE))
    assert {name: lock.get(name) for name in pins} == pins  # each pinned to requirements.lock's version


@pytest.mark.slow
def test_the_model_environment_builds_from_its_own_requirements_and_predicts(logged_model, tmp_path):
    """A fresh virtual environment from the model's requirements.txt alone (offline, from the package cache that
    `make setup` filled): no project, no sstkd installed; the model predicts there as it does here."""
    uri, network, payload = logged_model
    uv = Path(sys.executable).with_name("uv")
    if not uv.is_file():
        pytest.skip("no uv beside this interpreter (`make setup` installs it)")
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "served")))
    venv = tmp_path / "model-env"
    subprocess.run([str(uv), "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    installed = subprocess.run([str(uv), "pip", "install", "-q", "--offline", "-p", str(venv / "bin/python"),
                                "-r", str(local / "requirements.txt")], capture_output=True, text=True)
    if installed.returncode != 0 and "offline" in installed.stderr.lower():
        pytest.skip(f"the package cache lacks a requirement offline: {installed.stderr.strip()[-300:]}")
    assert installed.returncode == 0, installed.stderr
    run = subprocess.run([str(venv / "bin/python"), "-c", PREDICT, str(local)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["torch"].startswith(str(venv))  # the model's own environment, not this one
    assert all(str(local) in file for file in result["files"])
    images = np.random.default_rng(0).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.array(result["labels"]), predict_labels(network, images, payload["normalization"]))
