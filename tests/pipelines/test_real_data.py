"""The README's commands for real datasets, run as written on tiny datasets in the official layouts."""

import hashlib
import os
import signal
import subprocess
import time

import pandas as pd
import pytest

from ..data.layouts import make_ade20k, make_cityscapes, make_voc
from .cli import KEDRO, copy_project, output, run

pytestmark = pytest.mark.slow


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
    make_voc(tmp_path / "VOC2012")
    result = run(project, "run", "--env", "voc", "--pipelines", "ingestion", "--params",
                 f"dataset_root={tmp_path / 'VOC2012'}", check=False)
    assert result.returncode != 0
    assert "set raw_dataset.options.use_sbd_aug: false (conf/voc/catalog.yml)" in output(result)


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


def test_the_readme_study_command_gets_past_validation_into_training(project, tmp_path):
    """`kedro run --env cityscapes --pipelines study` is paper-sized (ResNet-101 at 512x1024): here it is only
    followed until the teacher starts training, then stopped."""
    make_cityscapes(tmp_path / "cityscapes")
    environment = dict(os.environ, DO_NOT_TRACK="1", MPLBACKEND="Agg", COLUMNS="200",
                       SSTKD_DATASET_ROOT=str(tmp_path / "cityscapes"))
    process = subprocess.Popen([str(KEDRO), "run", "--env", "cityscapes", "--pipelines", "study"], cwd=project,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    seen = []
    try:
        deadline = time.time() + 240
        for line in process.stdout:
            seen.append(line)
            if "Running node: train_teacher" in line or time.time() > deadline:
                break
        time.sleep(3)
        assert process.poll() is None, "".join(seen[-40:])
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    log = " ".join("".join(seen).split())
    assert "Running node: build_validated_manifest" in log and "Running node: train_teacher" in log, log[-3000:]
