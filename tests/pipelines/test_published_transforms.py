"""CIRKD's VOC and ADE20K protocols end to end on datasets of many image sizes: ``kedro run --env voc_cirkd`` /
``ade20k_cirkd`` with a seconds-long schedule given in a ``kedro run --config`` file, as a user tries an env first.

Images are cached at their own sizes (no ``cache_size``), trained on random-scale crops of the originals and
evaluated whole: every labelled pixel of every validation image, at its own size, is in the confusion matrix.
"""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from ..data.layouts import make_ade20k_mixed, make_voc_mixed
from .cli import copy_project, run

pytestmark = pytest.mark.e2e

# The env's networks and methods stay; only the schedule, the sizes and the weights (no ImageNet files here) shrink.
TRIAL = {
    "data": {"workers": 2},
    "preprocessing": {"workers": 2},
    "training": {"epochs": 1, "batch_size": 4, "crop_size": [32, 32], "num_workers": 0, "sync_batchnorm": False,
                 "progress": False},
    "teacher": {"network": {"backbone": "resnet18_deep", "backbone_weights": "random", "head_channels": 32},
                "training": {"epochs": 1, "crop_size": [32, 32]}},
    "distillation": {"run": ["baseline", "sstkd"],
                     "student": {"network": {"backbone_weights": "random", "head_channels": 16}}},
    "study": {"seeds": [0]},
    "evaluation": {"latency_runs": 1, "qualitative_samples": 2,
                   "texture_transfer": {"test_images": 6, "probe_pixels": 2048, "probe_steps": 20, "cka_pixels": 1024}},
}


@pytest.mark.parametrize("env, make, options, val_masks, ignored", [
    ("voc_cirkd", make_voc_mixed, {"use_sbd_aug": False}, "SegmentationClass", 255),
    pytest.param("ade20k_cirkd", make_ade20k_mixed, {}, "ADEChallengeData2016/annotations/validation", 0,
                 marks=pytest.mark.slow),
])
def test_a_cirkd_env_trains_on_crops_of_the_originals_and_scores_every_image_at_its_own_size(
        tmp_path, env, make, options, val_masks, ignored):
    project = copy_project(tmp_path / "project")
    make(tmp_path / "raw")
    config = tmp_path / "trial.yml"
    config.write_text(yaml.safe_dump({"run": {"env": env, "params": TRIAL | options | {
        "dataset_root": str(tmp_path / "raw")}}}))
    run(project, "run", "--config", str(config))

    meta = json.loads((project / f"data/{env}/05_model_input/cache/meta.json").read_text())
    assert meta["ragged"] == {"train": ["images", "masks"], "val": ["images", "masks"]}
    assert meta["shapes"]["val"]["images"]["smallest"] != meta["shapes"]["val"]["images"]["largest"]
    results = json.loads((project / f"data/{env}/07_model_output/evaluation_results.json").read_text())
    assert sorted(results) == ["baseline.seed_0", "sstkd.seed_0", "teacher"]
    if env == "voc_cirkd":  # VOC's validation masks are those of val.txt; the train masks sit beside them
        names = (tmp_path / "raw/ImageSets/Segmentation/val.txt").read_text().split()
        masks = [tmp_path / "raw" / val_masks / f"{name}.png" for name in names]
    else:
        masks = sorted((tmp_path / "raw" / val_masks).glob("*.png"))
    labelled = sum(int((np.asarray(Image.open(path)) != ignored).sum()) for path in masks)
    for name, result in results.items():
        assert np.asarray(result["metrics"]["confusion_matrix"]).sum() == labelled, name
    report = (project / f"data/{env}/08_reporting/report.md").read_text()
    assert "Beside the published numbers" in report and "like for like" not in report
    assert {result["images_resized_to"] for result in results.values()} == {None}  # each image at its own size
