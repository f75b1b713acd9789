"""The pretraining stage through the real `kedro run` CLI on conf/tiny: backbones trained once on the texture
corpus, each in its own MLflow run, and the teacher and students starting from them."""

import shutil
import sqlite3

import pytest
import torch

from .cli import copy_project, output, run

pytestmark = pytest.mark.e2e

PRETRAINED = ("pretraining.backbones=[resnet10],teacher.network.backbone_weights=pretrained,"
              "distillation.student.network.backbone_weights=pretrained,distillation.run=[baseline+pixel_kd]")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    path = copy_project(tmp_path_factory.mktemp("pretraining"))
    run(path, "run", "--env", "tiny", "--pipelines", "data,pretraining,teacher,distillation", "--params", PRETRAINED)
    return path


def test_the_teacher_and_students_start_from_the_stage_weights_recorded_in_their_lineage(project):
    from sstkd.catalog.datasets import PretrainedBackbonesDataset
    from sstkd.training.checkpoint import load_checkpoint

    with_cwd = pytest.MonkeyPatch.context()
    with with_cwd as patch:
        patch.chdir(project)
        record = PretrainedBackbonesDataset("data/tiny/06_models/pretrained").load()["backbones"]["resnet10"]
    assert record["path"] == f"data/tiny/06_models/pretrained/{record['file']}"  # relative: no machine path
    weights = torch.load(project / record["path"], weights_only=True)
    assert "fc.weight" in weights and record["epochs"] == 2
    for model in ("teacher.pt", "students/baseline/seed_0.pt", "students/pixel_kd/seed_0.pt"):
        payload = load_checkpoint(project / "data/tiny/06_models" / model)
        assert payload["network"]["backbone_weights"] == record["path"]
        assert payload["lineage"]["parameters"]["network"]["backbone_weights"] == record["path"]
        assert payload["lineage"]["pretrained_backbone"]["sha256"] == record["sha256"]
        assert payload["lineage"]["pretrained_backbone"]["mlflow_run_id"] == record["mlflow_run_id"]
    with sqlite3.connect(project / "mlflow.db") as db:
        runs = db.execute("select run_uuid from tags where key = 'sstkd.model' and value = 'pretraining.resnet10'")
        assert [row[0] for row in runs] == [record["mlflow_run_id"]]
        steps = db.execute("select count(*) from metrics where run_uuid = ? and key = 'val_accuracy'",
                           (record["mlflow_run_id"],)).fetchone()[0]
        started_from = db.execute("select count(*) from tags where key = 'sstkd.pretraining_run_id' and value = ?",
                                  (record["mlflow_run_id"],)).fetchone()[0]
    assert started_from == 3  # the teacher's and both students' runs name the weights' run
    assert steps == 2  # one per epoch


def test_a_rerun_finds_the_backbone_up_to_date(project):
    # `data_root` given: these --params change models of the study under it, on purpose (the study's own root)
    log = output(run(project, "run", "--env", "tiny", "--pipelines", "pretraining", "--params",
                     PRETRAINED + ",data_root=data/tiny"))
    assert "pretraining.resnet10 is up to date" in log


def test_pretrained_weights_of_a_backbone_the_stage_does_not_train_fail_at_the_start(project):
    result = run(project, "run", "--env", "tiny", "--pipelines", "teacher", "--params",
                 "teacher.network.backbone_weights=pretrained,data_root=data/tiny-other", check=False)
    text = output(result)
    assert result.returncode != 0
    assert "teacher.network.backbone_weights: pretrained, but pretraining.backbones ([]) does not train resnet10" in text
    assert "Running node" not in text


def test_params_that_change_the_pretrained_weights_do_not_silently_replace_them(project):
    manifest = project / "data/tiny/06_models/pretrained/manifest.json"
    before = manifest.read_text()
    result = run(project, "run", "--env", "tiny", "--pipelines", "pretraining", "--params",
                 PRETRAINED + ",pretraining.training.epochs=3", check=False)
    assert result.returncode != 0 and "pretrained_backbones" in output(result)
    assert "data_root=data/tiny-experiment" in output(result)
    assert manifest.read_text() == before


def test_a_missing_pretrained_weights_file_names_it_and_the_fix(project):
    folder = project / "data/tiny/06_models/pretrained"
    weights = next(folder.glob("resnet10-*.pt"))
    moved = weights.with_name(weights.name + ".away")
    weights.rename(moved)
    try:
        result = run(project, "run", "--env", "tiny", "--pipelines", "teacher", "--params",
                     PRETRAINED + ",data_root=data/tiny", check=False)  # the study's own root, on purpose
    finally:
        moved.rename(weights)
    error = result.stderr.strip()
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert error.startswith("Error: the pretrained weights ") and len(error.splitlines()) <= 10, error
    assert weights.name in error and "data/tiny/06_models/pretrained" in error
    assert "kedro run --pipelines pretraining" in error


def test_a_study_copied_to_another_data_root_finds_its_teacher_up_to_date(project):
    # the teacher's fingerprint holds its backbone weights' content, not the path of the root they lie under
    moved = project / "data/tiny-moved"
    shutil.copytree(project / "data/tiny", moved)
    try:
        log = output(run(project, "run", "--env", "tiny", "--pipelines", "teacher", "--params",
                         PRETRAINED + ",data_root=data/tiny-moved"))
    finally:
        shutil.rmtree(moved)
    assert "teacher is up to date" in log and "Running node" in log
    assert "epoch 1/" not in log
