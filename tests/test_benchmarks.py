"""The hand-run benchmarks that the READMEs quote must keep running on the project's configuration."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_protocol_cost_times_every_row_of_the_env_and_orders_its_projections():
    result = subprocess.run([sys.executable, "benchmarks/protocol_cost.py", "--env", "tiny", "--steps", "1",
                             "--budget", "0.001"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    # conf/tiny trains the default rows: one line each, and its total is epochs x (steps x step + fixed).
    timed = {}
    for row in ("teacher", "baseline", "pixel_kd", "sstkd"):
        line = next(line for line in lines if line.split()[:1] == [row])
        epochs, steps = map(int, re.search(r"\((\d+) epochs x (\d+) steps", line).groups())
        numbers = [float(value) for value in line.split("(")[0].split()[1:]]
        step_ms, fixed, total = numbers[0], numbers[-2], numbers[-1]
        assert min(numbers) >= 0, line
        assert total == pytest.approx(epochs * (steps * step_ms / 1000 + fixed), abs=0.02 * epochs), line
        timed[row] = numbers
    assert timed["baseline"][1] == 0 and timed["sstkd"][1] > 0  # the teacher's forward: only where one is used
    seconds = [float(m) for m in re.findall(r"= +([0-9.]+) s \(over the 0.001-minute budget\)", result.stdout)]
    assert len(seconds) == 3, result.stdout
    one_process, teacher_free, workers = seconds
    assert one_process > teacher_free > workers > 0  # KD rows spend time in the teacher; two workers halve them


def test_data_cache_reads_the_ragged_cache_beside_the_fixed_one_and_the_files():
    result = subprocess.run([sys.executable, "benchmarks/data_cache.py", "--samples", "12", "--size-range", "30", "50",
                             "--fixed-size", "48", "48", "--crop", "32"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line[:16].strip(): line[16:].split() for line in result.stdout.splitlines()[2:]}
    assert sorted(rows) == ["files (decode)", "fixed cache", "ragged cache"]
    assert rows["files (decode)"][1] == "1.0x" and all(float(row[0]) > 0 for row in rows.values())
    assert result.stdout.startswith("12 voc training samples, ") and "fixed cache 48x48" in result.stdout


def test_kd_diagnosis_takes_kedro_style_params_and_refuses_what_this_cpu_would_emulate(tmp_path):
    import torch

    from sstkd.training.loop import native_cpu_bf16

    if native_cpu_bf16() or torch.cuda.is_available():
        pytest.skip("bf16 runs in hardware here: nothing to refuse")
    command = [sys.executable, "benchmarks/kd_diagnosis.py", "train", "--env", "converged", "--data-root",
               str(tmp_path / "none"), "--row", "baseline", "--records", str(tmp_path / "r.jsonl")]
    refused = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "baseline: training.cpu_bf16: true, but this CPU" in refused.stderr
    assert "--params training.cpu_bf16=false" in refused.stderr
    fp32 = subprocess.run([*command, "--params", "training.cpu_bf16=false"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert fp32.returncode == 1 and "05_model_input/cache" in fp32.stderr  # past the check, at the missing study
    assert not (tmp_path / "r.jsonl").exists()


def test_kd_diagnosis_select_names_the_best_row_on_validation_and_waits_for_every_row(tmp_path):
    """A weight selection's rule as weight_selection_issue19.sh applies it: best val mIoU, never test, all rows done."""
    import json

    def write(label: str, val: float, test: float, seed: int = 0):
        path = tmp_path / f"{label}.jsonl"
        path.write_text(json.dumps({"row": label, "seed": seed, "epochs": 120, "val_miou": val, "test_miou": test,
                                    "best_epoch": 100}) + "\n")
        return str(path)

    select = [sys.executable, "benchmarks/kd_diagnosis.py", "select", "--records"]
    rows = [write("cwd_3", 80.5, 90.0), write("cwd_1", 81.2, 70.0), write("cwd_0.3", 79.0, 60.0)]
    chosen = subprocess.run([*select, *rows], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert chosen.returncode == 0 and chosen.stdout == "cwd_1\n", chosen.stderr
    assert chosen.stderr.index("cwd_1") < chosen.stderr.index("cwd_3") < chosen.stderr.index("cwd_0.3")
    shown = [line for line in chosen.stderr.splitlines() if "val mIoU" in line]  # the rows, not any warning
    assert len(shown) == 3 and not any("test" in line or "90.00" in line for line in shown)  # no test numbers
    unfinished = subprocess.run([*select, *rows, str(tmp_path / "cwd_0.1.jsonl")], cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
    assert unfinished.returncode == 1 and unfinished.stdout == "" and "cwd_0.1.jsonl: no record yet" in unfinished.stderr
    mixed = subprocess.run([*select, *rows, write("cwd_0.1", 99.0, 99.0, seed=1)], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert mixed.returncode == 1 and mixed.stdout == "" and "mix seeds" in mixed.stderr


@pytest.mark.slow
def test_kd_diagnosis_trains_probes_reports_and_measures_calibration_on_a_real_tiny_study(tmp_path):
    """benchmarks/kd_diagnosis.py on a study that `kedro run` wrote (data and teacher of conf/tiny)."""
    import json

    from tests.pipelines.cli import copy_project, run

    project = copy_project(tmp_path / "project")
    run(project, "run", "--env", "tiny", "--pipelines", "data,teacher")
    records = tmp_path / "records.jsonl"
    script = [sys.executable, str(ROOT / "benchmarks/kd_diagnosis.py")]
    common = ["--env", "tiny", "--data-root", "data/tiny"]
    for command in ([*script, "train", *common, "--row", "kd_l1=pixel_kd:losses.pixel_kd.weight=1",
                     "--epochs", "2", "--seeds", "0", "--records", str(records)],
                    [*script, "train", *common, "--row", "kd_selection=pixel_kd", "--no-probes",
                     "--checkpoint-root", str(tmp_path / "checkpoints"), "--epochs", "1", "--seeds", "0",
                     "--records", str(records)],
                    [*script, "calibration", *common, "--output", str(tmp_path / "calibration.md")],
                    [*script, "report", "--records", str(records), "--output", str(tmp_path / "report")]):
        result = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert [(r["row"], r["method"], r["epochs"], r["seed"]) for r in rows] == [("kd_l1", "pixel_kd", 2, 0),
                                                                             ("kd_selection", "pixel_kd", 1, 0)]
    kd, selection = rows
    # a weight selection's run keeps the validation curve and the final measures, without the per-epoch probes
    assert selection["probes"] is False and kd["probes"] is True
    assert list(selection["history"][0]) == [key for key in kd["history"][0] if not key.startswith(("grad_", "weight_norm_", "kl_"))]
    assert selection["kl_eval"] > 0 and 0 <= selection["val_miou"] <= 100
    assert (tmp_path / "checkpoints/kd_selection/1_epochs_seed_0/pixel_kd/last.pt").is_file()
    rerun = subprocess.run([*script, "train", *common, "--row", "kd_selection=pixel_kd", "--no-probes",
                            "--checkpoint-root", str(tmp_path / "checkpoints"), "--epochs", "1", "--seeds", "0",
                            "--records", str(tmp_path / "rerun.jsonl")], cwd=project, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0 and "resuming from" in rerun.stderr, rerun.stderr[-3000:]
    resumed = json.loads((tmp_path / "rerun.jsonl").read_text())
    assert (resumed["val_miou"], resumed["history"]) == (selection["val_miou"], selection["history"])
    assert kd["overrides"] == [["losses.pixel_kd.weight", 1]] and len(kd["history"]) == 2
    # what each row trained: the override in the one, the env's weight in the other
    assert kd["losses"]["pixel_kd"]["weight"] == 1 and selection["losses"]["pixel_kd"]["weight"] == 10.0
    epoch = kd["history"][-1]
    assert epoch["grad_pixel_kd_parameters"] > 0 and epoch["grad_cross_entropy_logits"] > 0
    assert -1 <= epoch["grad_pixel_kd_cosine_to_cross_entropy"] <= 1 and epoch["weight_norm_batchnormed"] > 0
    assert kd["kl_eval"] > 0 and 0 <= kd["test_miou"] <= 100 and 0 <= kd["precise_bn_test_miou"] <= 100
    assert "| train crops | 1 |" in (tmp_path / "calibration.md").read_text()
    assert "| kd_l1 | 2 | 0 |" in (tmp_path / "report.md").read_text()
    assert "| kd_selection | 1 | 0 |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "report_curves.png").stat().st_size > 5000


@pytest.mark.slow
def test_the_gpu_check_runs_its_code_paths_on_the_cpu_in_a_dry_run(tmp_path):
    """The first GPU lent runs benchmarks/gpu_check.sh: its dry run here goes through every step at tiny sizes."""
    import json

    from .pipelines.cli import copy_project

    out, project = tmp_path / "gpu", copy_project(tmp_path / "project")  # its own run lock and MLflow store
    result = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--out", str(out), "--project",
                             str(project)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = (out / "summary.md").read_text()
    for step in ("**facts**", "**tests**", "**step benchmark**", "**kedro run --env cityscapes, SSTKD**"):
        assert step in summary, summary
    assert "FAILED" not in summary
    facts = json.loads((out / "facts.json").read_text())
    assert facts["cuda_available"] == "False" and facts["cpu_capability"]
    step = json.loads((out / "step_cpu.json").read_text())
    assert set(step["methods"]) == {"pixel_kd", "sstkd", "teacher_forward"}
    assert 0 < step["methods"]["sstkd"]["percent_of_peak"] < 100 and step["peak_gflop_per_s"] > 0
    assert step["methods"]["sstkd"]["gflop"] > step["methods"]["teacher_forward"]["gflop"]
    run = json.loads((out / "cityscapes_sstkd.json").read_text())
    assert run["iterations"] == 8 and run["all_finite"] and run["image_size"] == [64, 128]
    assert (out / "cityscapes_layout" / "gtFine" / "train" / "aachen").is_dir()  # the official layout


def test_the_gpu_checks_cost_of_a_converged_student_follows_the_env_not_a_constant():
    """conf/converged's students: 120 epochs of 320 generated training images in batches of 16, the last one full."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.converged_student_schedule() == (120, 120 * (320 // 16))
