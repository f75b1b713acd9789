"""A user's mistakes through the real `kedro run` CLI end in a short `Error: <what>, <file>: <fix>` message on
stderr and exit status 1, not a page of traceback; `SSTKD_TRACEBACK=1` still shows it. And a run's log reads
well in a file: whole lines, the study's table at the end."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from sstkd.locking import ProjectLock

from .cli import copy_project, run, short_error

pytestmark = pytest.mark.e2e

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny study's data and teacher, run with stdout and stderr to files (what CI and `make run > log` do)."""
    path = copy_project(tmp_path_factory.mktemp("mistakes"))
    run(path, "run", "--env", "tiny", "--pipelines", "data,teacher")
    return path


@pytest.fixture
def broken(project):
    """Break a file of the project for one test; it is put back afterwards."""
    saved = []

    def save(relative: str) -> object:
        path = project / relative
        backup = path.with_name(path.name + ".good")
        shutil.copy(path, backup)
        saved.append((backup, path))
        return path

    yield save
    for backup, path in saved:
        shutil.move(backup, path)


def test_a_truncated_model_names_the_file_and_how_to_restore_it(project, broken):
    teacher = broken("data/tiny/06_models/teacher.pt")
    teacher.write_bytes(teacher.read_bytes()[:50_000])  # an interrupted copy
    result = run(project, "run", "--env", "tiny", "--pipelines", "distillation", "--params",
                 "distillation.run=[pixel_kd]", check=False)
    short_error(result, "truncated or corrupt", "data/tiny/06_models/teacher.pt",
                "dvc checkout data/tiny/06_models/teacher.pt", "kedro run --pipelines teacher")
    with_traceback = run(project, "run", "--env", "tiny", "--pipelines", "distillation", "--params",
                         "distillation.run=[pixel_kd]", check=False, env={"SSTKD_TRACEBACK": "1"})
    assert with_traceback.returncode == 1 and "Traceback" in with_traceback.stderr
    assert "UnreadableFileError" in with_traceback.stderr  # the whole chain, then the short message
    assert with_traceback.stderr.strip().splitlines()[-1].startswith("Error: not a readable sstkd checkpoint")


def test_a_truncated_cache_array_names_it_and_the_stage_that_rebuilds_it(project, broken):
    images = broken("data/tiny/05_model_input/cache/train/images.npy")
    images.write_bytes(images.read_bytes()[:4096])
    result = run(project, "run", "--env", "tiny", "--pipelines", "teacher", check=False)
    short_error(result, "data/tiny/05_model_input/cache/train/images.npy", "kedro run --pipelines preprocessing")


def test_a_model_of_another_dataset_is_refused_by_name(project, broken):
    teacher = broken("data/tiny/06_models/teacher.pt")
    payload = torch.load(teacher, weights_only=True)
    payload["class_names"] = [f"other_{name}" for name in payload["class_names"]]
    torch.save(payload, teacher)
    result = run(project, "run", "--env", "tiny", "--pipelines", "distillation", "--params",
                 "distillation.run=[pixel_kd]", check=False)
    short_error(result, "does not belong to this dataset", "class names differ", "teacher.pt")


def test_a_held_run_lock_names_the_holder_and_what_to_do(project):
    lock = ProjectLock(project / "data" / ".sstkd-run.lock")
    lock.acquire("kedro run --env tiny (the other run)")
    try:
        result = run(project, "run", "--env", "tiny", "--pipelines", "teacher", check=False)
    finally:
        lock.release()
    short_error(result, "another run is using this project's data", "the other run", "wait for it to finish")


def test_bf16_autocast_that_this_cpu_would_emulate_is_refused_before_any_node_runs(project):
    from sstkd.training.loop import native_cpu_bf16

    if native_cpu_bf16() or torch.cuda.is_available():
        pytest.skip("bf16 runs in hardware here: nothing to refuse (test_environments forces the other case)")
    teacher = project / "data" / "tiny" / "06_models" / "teacher.pt"
    before = teacher.stat().st_mtime_ns
    result = run(project, "run", "--env", "tiny", "--pipelines", "teacher", "--params", "training.cpu_bf16=true",
                 check=False)
    short_error(result, "training.cpu_bf16: true, but this CPU", "--params training.cpu_bf16=false")
    assert teacher.stat().st_mtime_ns == before
    # a run that trains nothing is not refused: its models have no numerics to emulate
    evaluation = run(project, "run", "--env", "tiny", "--pipelines", "data", "--params", "training.cpu_bf16=true",
                     check=False)
    assert "cpu_bf16" not in evaluation.stderr, evaluation.stderr[-2000:]


def test_a_generator_pointed_at_a_users_folder_refuses_and_touches_nothing(project, tmp_path):
    root = tmp_path / "mine"
    (root / "01_raw" / "texture_mosaics").mkdir(parents=True)
    (root / "01_raw" / "texture_mosaics" / "holiday.jpg").write_bytes(b"not ours")
    result = run(project, "run", "--env", "tiny", "--pipelines", "synthetic", "--params", f"data_root={root}",
                 check=False)
    short_error(result, "texture_mosaics")
    assert (root / "01_raw" / "texture_mosaics" / "holiday.jpg").read_bytes() == b"not ours"


@pytest.fixture
def generic_dataset(mosaic_root, tmp_path):
    root = tmp_path / "mydata"
    shutil.copytree(mosaic_root, root)
    return root


def _generic_data_run(project, root):
    return run(project, "run", "--env", "generic", "--pipelines", "data", "--params",
               f"dataset_root={root},data_root=data/generic-check", check=False)


def test_a_classes_json_syntax_error_names_the_file_and_line(project, generic_dataset):
    (generic_dataset / "classes.json").write_text('{"classes": ["a", "b",\n  ]}\n')
    error = short_error(_generic_data_run(project, generic_dataset), "classes.json line 2", "not valid JSON",
                        '{"classes": [')
    assert str(generic_dataset) in error or "mydata/classes.json" in error


def test_a_class_named_twice_in_classes_txt_names_the_line(project, generic_dataset):
    (generic_dataset / "classes.json").unlink()
    names = ["road", "car", "road"] + [f"c{i}" for i in range(5)]
    (generic_dataset / "classes.txt").write_text("\n".join(names) + "\n")
    short_error(_generic_data_run(project, generic_dataset), "classes.txt line 3", "'road' is named twice")


def test_an_rgb_mask_is_named_in_a_short_message(project, generic_dataset):
    mask = sorted((generic_dataset / "masks").glob("test_*.png"))[1]
    labels = np.array(Image.open(mask))
    Image.fromarray(np.stack([labels] * 3, axis=-1)).save(mask)
    error = short_error(_generic_data_run(project, generic_dataset), f"- masks/{mask.name}: unreadable mask",
                        "mode RGB", "Real datasets")
    assert error.count(mask.name) == 1 and "validating samples" not in error  # no progress bar off a terminal


def test_a_full_disk_names_the_artifact_and_keeps_nothing_half_written(project, tmp_path):
    mount = tmp_path / "small_disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        result = run(project, "run", "--env", "tiny", "--pipelines", "data", "--params", f"data_root={mount}",
                     check=False)
        short_error(result, "disk full while writing", str(mount), "Free some space")
        assert not list(mount.rglob("*.tmp*"))  # no temporary file left behind
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_log_in_a_file_has_whole_lines_and_ends_with_the_study_table(project):
    # evaluated on val (evaluation.split), the split every table and metric name must then say
    result = run(project, "run", "--env", "tiny", "--pipelines", "distillation,evaluation", "--params",
                 "distillation.run=[baseline+pixel_kd],evaluation.split=val")
    lines = result.stdout.splitlines()
    assert not any("│" in line or "╭" in line for line in lines)  # no Rich frames in a file
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+ ", lines[0]), lines[:3]  # plain from the first line on
    sanity = [line for line in lines if "Sanity checks:" in line]
    assert len(sanity) == 1 and "pixel_kd not worse than baseline" in sanity[0]  # one whole line, not wrapped
    assert any(len(line) > 100 for line in lines)  # nothing cut at 80 columns
    start = next(i for i, line in enumerate(lines) if line.startswith("The study: val metrics in %"))
    end = lines.index("", start + 1)
    header, rule, *rows = lines[start + 1:end]
    assert header.split()[:4] == ["method", "seeds", "val", "mIoU"] and "vs baseline" in header
    assert set(rule) <= {"-", " "}
    assert [row.split()[0] for row in rows] == ["teacher", "baseline", "pixel_kd"]
    assert "+" in rows[2][header.index("vs baseline"):]  # the paired difference under its heading
    metrics = json.loads((project / "data/tiny/08_reporting/metrics.json").read_text())
    assert f"{metrics['pixel_kd']['miou_mean']:.2f}" in rows[2]
    report = (project / "data/tiny/08_reporting/report.md").read_text()
    assert "Metrics on the val split" in report and "teacher − baseline val mIoU" in report
    assert "test mIoU" not in report
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs(client.get_experiment_by_name("sstkd").experiment_id,
                              order_by=["attributes.start_time DESC"], max_results=10)
    pipeline = next(r for r in runs if "sstkd.role" not in r.data.tags)  # this run's, not a student's nested one
    assert "eval_val.teacher.miou" in pipeline.data.metrics and "test.teacher.miou" not in pipeline.data.metrics
    student = next(r for r in runs if r.data.tags.get("sstkd.model") == "pixel_kd.seed_0")
    assert "eval_val_miou" in student.data.metrics and "test_miou" not in student.data.metrics
