"""The README's commands for real datasets, run as written on tiny datasets in the official layouts."""

import hashlib
import os
import signal
import subprocess

import pandas as pd
import pytest

from ..data.layouts import make_ade20k, make_cityscapes, make_generic, make_voc
from .cli import KEDRO, copy_project, output, run, short_error

pytestmark = pytest.mark.e2e


def _digest(root):
    digest = hashlib.sha1()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest(), oct(root.stat().st_mode & 0o777)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("project"))


@pytest.mark.parametrize("env, make, samples", [("cityscapes", make_cityscapes, {"train": 2, "val": 1}),
                                                 ("ade20k", make_ade20k, {"train": 2, "val": 1})])
def test_the_readme_data_command_reads_the_dataset_where_the_user_put_it(project, tmp_path, env, make, samples):
    make(tmp_path / env)
    before = _digest(tmp_path / env)
    # README: export SSTKD_DATASET_ROOT=/data/<dataset>; kedro run --env <dataset> --pipelines data
    run(project, "run", "--env", env, "--pipelines", "data", env={"SSTKD_DATASET_ROOT": str(tmp_path / env)})
    manifest = pd.read_csv(project / f"data/{env}/02_intermediate/manifest.csv")  # the env's own data root
    assert manifest.groupby("split").size().to_dict() == samples
    assert (project / f"data/{env}/05_model_input/cache/meta.json").is_file()
    assert _digest(tmp_path / env) == before  # read, never written


def test_dataset_root_on_the_command_line_and_the_voc_sbd_switch(project, tmp_path):
    make_voc(tmp_path / "VOC2012")  # VOC without SBD's aug set
    root = f"dataset_root={tmp_path / 'VOC2012'}"
    result = run(project, "run", "--env", "voc", "--pipelines", "data", "--params", root, check=False)
    assert result.returncode != 0
    assert "turn it off with `--params use_sbd_aug=false`" in output(result)
    short_error(result, "train_aug.txt does not exist")
    # README: kedro run --env voc --pipelines data --params dataset_root=/data/VOC2012,use_sbd_aug=false
    run(project, "run", "--env", "voc", "--pipelines", "data", "--params", f"{root},use_sbd_aug=false")
    manifest = pd.read_csv(project / "data/voc/02_intermediate/manifest.csv")
    assert manifest.groupby("split").size().to_dict() == {"train": 2, "val": 1}


def test_a_users_own_dataset_in_the_generic_env(project, tmp_path):
    make_generic(tmp_path / "mine")
    before = _digest(tmp_path / "mine")
    # README: kedro run --env generic --pipelines data --params dataset_root=/data/mine
    run(project, "run", "--env", "generic", "--pipelines", "data", "--params", f"dataset_root={tmp_path / 'mine'}")
    manifest = pd.read_csv(project / "data/generic/02_intermediate/manifest.csv")
    assert manifest.groupby("split").size().to_dict() == {"test": 1, "train": 2, "val": 1}
    assert _digest(tmp_path / "mine") == before


def test_the_old_readme_local_catalog_example_no_longer_destroys_the_dataset(project, tmp_path):
    """A `conf/local` raw_dataset entry without `generated:` used to inherit `generated: true` from base and be
    replaced by texture mosaics when the default pipeline ran."""
    make_cityscapes(tmp_path / "cityscapes")
    before = _digest(tmp_path / "cityscapes")
    (project / "conf/local/catalog.yml").write_text(
        "raw_dataset:\n  type: sstkd.catalog.datasets.SegmentationSourceDataset\n"
        f"  layout: cityscapes\n  path: {tmp_path / 'cityscapes'}\n")
    try:
        run(project, "run", "--pipelines", "data")
    finally:
        (project / "conf/local/catalog.yml").unlink()
    assert _digest(tmp_path / "cityscapes") == before
    assert pd.read_csv(project / "data/02_intermediate/manifest.csv").shape[0] == 4


def test_a_dataset_root_the_env_does_not_read_is_an_error(project, tmp_path):
    result = run(project, "run", "--pipelines", "data", "--params", f"dataset_root={tmp_path}", check=False)
    assert result.returncode != 0
    assert "is not used by the 'local' environment" in output(result)
    short_error(result, "Choose a dataset env: --env cityscapes|voc|ade20k|generic")


def save_deep_stem_imagenet_file(depth: int, path) -> None:
    """A deep-stem ResNet state dict in the KD codebases' file layout (flat conv1/bn1/.../bn3 stem names, fc)."""
    import torch

    from sstkd.models.backbones import DEEP_STEM_KEYS, RESNET_DEPTHS, deep_stem_resnet, rename_by_prefix

    state = deep_stem_resnet(*RESNET_DEPTHS[depth]).state_dict()
    flat, others = rename_by_prefix(state, [(own, flat) for flat, own in DEEP_STEM_KEYS.items()])
    state = flat | {key: state[key] for key in others}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_the_readme_study_command_gets_past_validation_into_training(project, tmp_path):
    """`kedro run --env cityscapes --pipelines study` is paper-sized (ResNet-101, 512x1024 crops, batch 8): on this
    2-image fixture it gets through ingestion, the cache and the teacher's set-up (networks, losses, loaders) and
    stops at its first batch ("fewer than one batch"), or is stopped here if it is still running."""
    make_cityscapes(tmp_path / "cityscapes")
    # README: the KD codebases' deep-stem ImageNet files go under data/01_raw/weights/ (here: random ones, same keys)
    for depth in (101, 18):
        save_deep_stem_imagenet_file(depth, project / f"data/01_raw/weights/resnet{depth}-imagenet.pth")
    environment = dict(os.environ, DO_NOT_TRACK="1", MPLBACKEND="Agg", COLUMNS="200",
                       SSTKD_DATASET_ROOT=str(tmp_path / "cityscapes"))
    process = subprocess.Popen([str(KEDRO), "run", "--env", "cityscapes", "--pipelines", "study"], cwd=project,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    try:
        output_text, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        output_text, _ = process.communicate()
    log = " ".join(output_text.split())
    assert "Running node: build_validated_manifest" in log and "Running node: train_teacher" in log, log[-3000:]
    if process.returncode not in (-signal.SIGKILL,):
        assert "fewer than one batch of 8" in log, log[-3000:]
