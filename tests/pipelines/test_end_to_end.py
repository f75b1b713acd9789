"""End-to-end runs of the real `kedro run` CLI on conf/tiny, in a throw-away copy of the project."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

from .cli import KEDRO, ROOT, SSTKD, copy_project, output
from .cli import run as _run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project (a git repository, as users have it) after a full `kedro run --env tiny`."""
    path = copy_project(tmp_path_factory.mktemp("project"))
    _run(path, "run", "--env", "tiny", "--params", "study.seeds=[0+1]")  # two seeds: intervals and verdicts
    return path


STUDENTS = [f"{method}.seed_{seed}" for method in ("baseline", "pixel_kd", "sstkd") for seed in (0, 1)]


def test_the_study_table_is_computed_from_the_per_seed_metrics(project):
    """The report's per-method statistics, recomputed directly from its per-model rows (2 seeds, 3 methods)."""
    from scipy import stats

    report = pd.read_csv(project / "data/tiny/08_reporting/report.csv")
    study = pd.read_csv(project / "data/tiny/08_reporting/study.csv").set_index("method")
    pairs = pd.read_csv(project / "data/tiny/08_reporting/study_comparisons.csv")
    metrics = json.loads((project / "data/tiny/08_reporting/metrics.json").read_text())
    t = stats.t.ppf(0.975, 1)  # two seeds: one degree of freedom
    by_seed = {m: report[report.method == m].set_index("seed")["miou"] for m in ("baseline", "pixel_kd", "sstkd")}
    teacher = report.loc[report.model == "teacher", "miou"].item()
    for method, values in by_seed.items():
        assert list(values.index) == [0, 1]
        mean, std = values.mean(), values.std(ddof=1)
        row = study.loc[method]
        assert row["seeds"] == 2 and row["miou_mean"] == pytest.approx(mean, abs=1e-3)
        assert row["miou_std"] == pytest.approx(std, abs=1e-3)
        assert row["miou_ci_low"] == pytest.approx(mean - t * std / np.sqrt(2), abs=1e-3)
        assert metrics[method]["miou_ci_high"] == pytest.approx(mean + t * std / np.sqrt(2), abs=1e-3)
    for method, reference in (("pixel_kd", "baseline"), ("sstkd", "baseline"), ("sstkd", "pixel_kd")):
        differences = by_seed[method] - by_seed[reference]
        row = pairs[(pairs.method == method) & (pairs.reference == reference) & (pairs.metric == "miou")].iloc[0]
        half = t * differences.std(ddof=1) / np.sqrt(2)
        assert row["difference_mean"] == pytest.approx(differences.mean(), abs=1e-3)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((differences.mean() - half, differences.mean() + half),
                                                                abs=1e-3)
        expected = "better" if differences.mean() - half > 0 else "worse" if differences.mean() + half < 0 \
            else "no detectable difference"
        assert row["verdict"] == expected
        assert metrics[method][f"delta_miou_vs_{reference}"] == pytest.approx(differences.mean(), abs=1e-3)
    from sstkd.evaluation.statistics import MIN_GAP

    gap = teacher - by_seed["baseline"].mean()
    if gap < MIN_GAP:  # the tiny teacher barely beats its students: no share of a gap that is not there
        assert np.isnan(study.loc["sstkd", "gap_recovered"])
    else:
        recovered = (by_seed["sstkd"] - by_seed["baseline"]).mean() / gap
        assert study.loc["sstkd", "gap_recovered"] == pytest.approx(recovered, rel=1e-3, abs=1e-3)
    assert not ((pairs.method == "baseline") & (pairs.reference == "pixel_kd")).any()  # shown once, the other way
    markdown = (project / "data/tiny/08_reporting/report.md").read_text()
    assert "## The study over 2 seeds (0, 1)" in markdown and "| sstkd | pixel_kd |" in markdown
    assert (project / "data/tiny/08_reporting/miou_per_method.png").stat().st_size > 5000


def test_the_default_pipeline_produces_the_report(project):
    report = pd.read_csv(project / "data/tiny/08_reporting/report.csv")
    assert list(report["model"]) == ["teacher", *STUDENTS]
    assert report["miou"].between(0, 100).all() and report["boundary_fscore"].between(0, 100).all()
    assert (report.loc[report.method == "baseline", "delta_miou"] == 0).all()  # over the same seed's baseline
    sstkd_1 = report[report.model == "sstkd.seed_1"].iloc[0]
    baseline_1 = report[report.model == "baseline.seed_1"].iloc[0]
    assert sstkd_1["delta_miou"] == pytest.approx(sstkd_1["miou"] - baseline_1["miou"], abs=2e-3)
    assert (report["params_millions"] > 0).all() and (report["gflops"] > 0).all()
    metrics = json.loads((project / "data/tiny/08_reporting/metrics.json").read_text())
    assert set(metrics) == {"teacher", "baseline", "pixel_kd", "sstkd"}
    for figure in ("miou_per_method", "per_class_iou", "qualitative", "texture_modules", "class_frequencies"):
        assert (project / f"data/tiny/08_reporting/{figure}.png").stat().st_size > 5000
    markdown = (project / "data/tiny/08_reporting/report.md").read_text()
    assert "| sstkd.seed_1 | student |" in markdown and "Per-class IoU" in markdown
    manifest = pd.read_csv(project / "data/tiny/02_intermediate/manifest.csv")
    assert manifest.groupby("split").size().to_dict() == {"test": 8, "train": 16, "val": 8}


def test_the_report_opens_with_sanity_checks_computed_from_the_study_itself(project):
    from sstkd.evaluation.sanity import last_quarter_gain
    from sstkd.training.checkpoint import load_checkpoint

    root = project / "data/tiny"
    markdown = (root / "08_reporting/report.md").read_text()
    assert markdown.index("## Sanity checks") < markdown.index("## The study over")
    report = pd.read_csv(root / "08_reporting/report.csv")
    margin = report.loc[report.role == "teacher", "miou"].iloc[0] - report.loc[report.method == "baseline", "miou"].mean()
    assert f"| teacher above the baseline | {margin:+.2f} | teacher − baseline test mIoU ≥ 8 |" in markdown
    transfer = pd.read_csv(root / "08_reporting/texture_transfer.csv").set_index("model")
    # every network of conf/tiny has a 64-channel stage 1: the width-matched probe is the probe itself
    assert (transfer["probe_accuracy_at_width"] == transfer["probe_accuracy"]).all()
    probe = transfer.loc["teacher", "probe_accuracy_at_width"] - transfer.loc[["baseline.seed_0", "baseline.seed_1"],
                                                                              "probe_accuracy_at_width"].mean()
    assert (f"| teacher's stage 1 holds more texture | {probe:+.2f} | teacher − baseline stage-1 probe accuracy at "
            "the same width ≥ 2 |") in markdown
    curves = [load_checkpoint(root / f"06_models/students/baseline/seed_{seed}.pt")["val_miou_curve"] for seed in (0, 1)]
    results = json.loads((root / "07_model_output/evaluation_results.json").read_text())
    assert [results[f"baseline.seed_{seed}"]["val_miou_curve"] for seed in (0, 1)] == curves  # the report's input
    history = json.loads((root / "07_model_output/histories/baseline/seed_0.json").read_text())
    assert curves[0] == [record["val_miou"] for record in history]
    assert all(len(curve) == 1 for curve in curves)  # one epoch: no last quarter to measure
    assert all(np.isnan(last_quarter_gain(curve)) for curve in curves)
    assert "| students converge |  |" in markdown and "trained 1 epoch(s): too few to have a last quarter" in markdown
    pixel_kd = [line for line in markdown.splitlines() if line.startswith("| pixel_kd not worse than baseline |")]
    assert len(pixel_kd) == 1 and "(2 seeds)" in pixel_kd[0]


def test_the_report_holds_the_texture_transfer_table_figure_and_metrics(project):
    table = pd.read_csv(project / "data/tiny/08_reporting/texture_transfer.csv")
    assert list(table["model"]) == ["teacher", *STUDENTS]
    teacher = table[table.model == "teacher"].iloc[0]
    assert teacher["profile_l1"] == 0 and teacher["intensity_l1"] == 0 and teacher["cka"] == pytest.approx(1.0)
    students = table[table.model != "teacher"]
    assert students["profile_l1"].between(0, 2).all() and (students["profile_l1"] > 0).all()
    assert students["intensity_l1"].between(0, 1).all() and students["cka"].between(0, 1).all()
    assert table["probe_accuracy"].between(0, 100).all()
    assert {"intensity_l1_n8", "histogram_w1_n32"} <= set(table.columns)
    assert (project / "data/tiny/08_reporting/texture_transfer.png").stat().st_size > 5000
    metrics = json.loads((project / "data/tiny/08_reporting/metrics.json").read_text())
    assert metrics["teacher"]["texture_cka"] == pytest.approx(1.0)
    sstkd_probe = table.loc[table.method == "sstkd", "probe_accuracy"].mean()  # averaged over the seeds
    assert metrics["sstkd"]["texture_probe_accuracy"] == pytest.approx(sstkd_probe, abs=1e-3)
    assert "## Texture transfer" in (project / "data/tiny/08_reporting/report.md").read_text()


# `kedro run` trains with every core unless OMP_NUM_THREADS says otherwise (the project hook)
_THREADS = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count())


def test_mlflow_records_one_run_with_nested_model_runs_and_lineage(project):
    with sqlite3.connect(project / "mlflow.db") as db:
        runs = dict(db.execute("select run_uuid, name from runs").fetchall())
        tags = db.execute("select run_uuid, key, value from tags").fetchall()
        params = db.execute("select count(*) from params").fetchone()[0]
    by_run = {}
    for run, key, value in tags:
        by_run.setdefault(run, {})[key] = value
    names = sorted(runs.values())
    assert names.count("teacher") == 1 and set(STUDENTS) <= set(names)
    teacher_id = next(r for r, n in runs.items() if n == "teacher")
    sstkd_id = next(r for r, n in runs.items() if n == "sstkd.seed_1")
    assert by_run[sstkd_id]["sstkd.teacher_run_id"] == teacher_id
    assert (by_run[sstkd_id]["sstkd.method"], by_run[sstkd_id]["sstkd.seed"]) == ("sstkd", "1")
    assert "mlflow.parentRunId" in by_run[sstkd_id]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    assert by_run[sstkd_id]["git.commit"] == commit
    parent = by_run[sstkd_id]["mlflow.parentRunId"]
    assert by_run[parent]["kedro.env"] == "tiny" and len(by_run[parent]["data.fingerprint"]) == 40
    import torch

    for run_id in (parent, sstkd_id):  # what decides the float results, on the pipeline's run and each model's
        assert by_run[run_id]["compute.torch"] == torch.__version__
        assert by_run[run_id]["compute.cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert by_run[run_id]["compute.threads"] == _THREADS and by_run[run_id]["compute.cpu_model"]
    assert params > 50  # flattened Kedro parameters + per-model parameters
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    assert by_run[parent]["runner"] == "SequentialRunner" and "kedro.session_id" not in by_run[parent]
    inputs = client.get_run(sstkd_id).inputs.dataset_inputs
    assert [i.dataset.digest for i in inputs] == [by_run[parent]["data.fingerprint"][:16]]
    artifacts = {a.path for a in client.list_artifacts(parent)}  # the report, logged by MlflowArtifactDataset
    assert {"report.md", "report.csv", "metrics.json", "texture_modules.png", "texture_transfer.csv",
            "texture_transfer.png"} <= artifacts, artifacts
    sstkd_metrics = client.get_run(sstkd_id).data.metrics  # the diagnostics reach each model's own run
    assert {"texture_cka", "texture_probe_accuracy", "texture_profile_l1"} <= set(sstkd_metrics), sstkd_metrics
    report = pd.read_csv(project / "data/tiny/08_reporting/report.csv").set_index("model")
    assert sstkd_metrics["test_miou"] == pytest.approx(report.loc["sstkd.seed_1", "miou"], abs=1e-2)  # percent
    assert sstkd_metrics["best_val_miou"] == pytest.approx(report.loc["sstkd.seed_1", "best_val_miou"], abs=1e-2)
    history = json.loads((project / "data/tiny/07_model_output/histories/sstkd/seed_1.json").read_text())
    logged = [m.value for m in client.get_metric_history(sstkd_id, "val_miou")]
    assert logged == pytest.approx([100 * epoch["val_miou"] for epoch in history])  # the report's unit too
    study = client.get_run(parent).data  # the study's statistics and verdicts on the pipeline's run
    assert {"study.sstkd.miou_mean", "study.sstkd.miou_ci_low", "study.sstkd.delta_miou_vs_baseline"} <= set(
        study.metrics), study.metrics
    assert study.tags["study.sstkd.vs_baseline.miou"] in ("better", "worse", "no detectable difference")


def test_lineage_cli_traces_a_model_file_to_data_code_params_and_teacher(project):
    out = _run(project, "lineage", "--model", "data/tiny/06_models/students/sstkd/seed_0.pt", command=SSTKD).stdout
    assert "git.commit" in out and "data.fingerprint" in out and "losses.structural.levels = 3" in out
    assert "teacher:" in out and "test_miou" in out
    import torch

    compute = out[out.index("compute ("):out.index("teacher:")]
    assert f"torch                    {torch.__version__}" in compute and f"threads                  {_THREADS}" in compute
    assert f"cpu_capability           {torch.backends.cpu.get_cpu_capability()}" in compute
    listing = _run(project, "runs", command=SSTKD).stdout
    assert "sstkd" in listing and "teacher" in listing


def test_one_stage_reruns_alone(project):
    before = (project / "data/tiny/06_models/teacher.pt").stat().st_mtime_ns
    _run(project, "run", "--env", "tiny", "--pipelines", "evaluation", "--params", "study.seeds=[0+1]")
    _run(project, "run", "--env", "tiny", "--pipelines", "distillation", "--namespaces", "baseline")
    assert (project / "data/tiny/06_models/teacher.pt").stat().st_mtime_ns == before


def test_the_env_writes_only_under_its_own_data_root_and_records_no_machine_path(project):
    assert (project / "data/tiny/06_models/teacher.pt").is_file()
    outside = [path for path in (project / "data").rglob("*") if path.is_file() and
               not path.is_relative_to(project / "data/tiny") and path.name != ".sstkd-run.lock"]
    assert outside == []  # the default study's root (data/) is untouched
    info = json.loads((project / "data/tiny/02_intermediate/dataset_info.json").read_text())
    assert info["root"] == "data/tiny/01_raw/texture_mosaics"
    ignored = subprocess.run(["git", "check-ignore", "-q", "data/tiny/08_reporting/metrics.json"], cwd=project)
    assert ignored.returncode == 1  # committed: `dvc metrics diff` reads it at every revision


TEACHER_RUNS = "select count(*) from tags where key = 'sstkd.model' and value = 'teacher'"  # the model's own runs


def test_a_rerun_that_changes_nothing_logs_nothing_and_keeps_the_models_run(project):
    from sstkd.training.checkpoint import load_checkpoint

    model = project / "data/tiny/06_models/teacher.pt"
    recorded = load_checkpoint(model)["mlflow_run_id"]
    assert recorded and load_checkpoint(model)["lineage"]["mlflow_run_id"] == recorded
    with sqlite3.connect(project / "mlflow.db") as db:
        before = db.execute(TEACHER_RUNS).fetchone()[0]
        versions = db.execute("select count(*) from model_versions").fetchone()[0]
    log = output(_run(project, "run", "--env", "tiny", "--pipelines", "teacher"))
    assert f"teacher is up to date (trained in run {recorded})" in log
    assert load_checkpoint(model)["mlflow_run_id"] == recorded
    with sqlite3.connect(project / "mlflow.db") as db:
        assert db.execute(TEACHER_RUNS).fetchone()[0] == before
        assert db.execute("select count(*) from model_versions").fetchone()[0] == versions
        names = {row[0] for row in db.execute("select name from registered_models")}
    assert {"sstkd-generic-teacher", "sstkd-generic-sstkd.seed_0"} <= names, names


def test_params_that_change_a_model_do_not_silently_replace_the_study(project):
    model = project / "data/tiny/06_models/teacher.pt"
    before = model.stat().st_mtime_ns
    result = _run(project, "run", "--env", "tiny", "--pipelines", "teacher", "--params", "training.epochs=2",
                  check=False)
    assert result.returncode != 0 and "data_root=data/tiny-experiment" in output(result)
    assert len((result.stdout + result.stderr).splitlines()) < 40 and model.stat().st_mtime_ns == before


@pytest.mark.slow
def test_a_node_trains_data_parallel_with_two_processes(project):
    model = project / "data/tiny/06_models/students/baseline/seed_7.pt"
    log = output(_run(project, "run", "--env", "tiny", "--pipelines", "distillation", "--namespaces", "baseline",
                      "--params", "training.nproc=2,study.seeds=[7]"))  # a new seed: a new model, the others kept
    history = json.loads((project / "data/tiny/07_model_output/histories/baseline/seed_7.json").read_text())
    assert len(history) == 1 and 0 <= history[0]["val_miou"] <= 1
    assert model.is_file() and "baseline.seed_7.train_student" in log and "seed_0.train_student" not in log


def test_a_corrupt_image_fails_ingestion_naming_it_and_keeps_the_manifest(project, tmp_path):
    manifest = project / "data/tiny/02_intermediate/manifest.csv"
    before = manifest.read_bytes()
    raw = project / "data/tiny/01_raw/texture_mosaics/images"
    victim = sorted(raw.glob("*.png"))[0]
    original = victim.read_bytes()
    try:
        victim.write_bytes(original[:100])
        result = _run(project, "run", "--env", "tiny", "--pipelines", "ingestion", check=False)
        assert result.returncode != 0
        assert f"{victim.name}: unreadable or corrupt image" in result.stdout + result.stderr
        assert manifest.read_bytes() == before
    finally:
        victim.write_bytes(original)


def test_wrong_parameters_fail_before_any_node_naming_every_key(project):
    """Every group is checked when the run starts, the methods' loss options too, and all problems are named."""
    teacher = project / "data/tiny/06_models/teacher.pt"
    before = teacher.stat().st_mtime_ns
    wrong = {"teacher.training.epochs=many": "teacher.training.epochs: Input should be a valid integer",
             "teacher.network.backbon=resnet18": "teacher.network.backbon: Extra inputs are not permitted",
             "distillation.methods.sstkd.losses.structural.levles=2":
                 "distillation.methods.sstkd.losses.structural.levles: unknown option",
             "evaluation.flip=sometimes": "evaluation.flip: Input should be a valid boolean"}
    result = _run(project, "run", "--env", "tiny", "--pipelines", "teacher", "--params", ",".join(wrong), check=False)
    text = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    for message in wrong.values():
        assert message in text, message
    assert "Running node" not in text and "Traceback" not in text
    assert "Add type hints" not in text  # MLflow's start-up warning about kedro-mlflow's class (sstkd.cli_hooks)
    assert len((result.stdout + result.stderr).splitlines()) < 40
    assert teacher.stat().st_mtime_ns == before


@pytest.mark.parametrize("how", ["--params", "yml"])
def test_an_unknown_top_level_parameter_fails_before_any_node_naming_it(tmp_path, how):
    """`trainig.epochs=1` used to be accepted silently: no node asks for `trainig`."""
    for item in ("conf", "src", "pyproject.toml", ".telemetry"):
        if (ROOT / item).is_dir():
            shutil.copytree(ROOT / item, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__", "local"))
        else:
            shutil.copy(ROOT / item, tmp_path / item)
    (tmp_path / "conf" / "local").mkdir()
    args = ["run", "--env", "tiny"]
    if how == "--params":
        args += ["--params", "trainig.epochs=1"]
        key, known = "trainig", "training"
    else:
        (tmp_path / "conf" / "tiny" / "parameters_extra.yml").write_text("evalution:\n  flip: true\n")
        key, known = "evalution", "evaluation"
    result = _run(tmp_path, *args, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{key}: unknown parameter group; did you mean '{known}'?" in output
    assert "Running node" not in output and not (tmp_path / "data").exists()
    assert len(output.splitlines()) < 40, output  # a message, not a page of traceback


@pytest.mark.parametrize("notebook", ["lineage.ipynb", "texture_modules.ipynb"])
def test_notebooks_run_on_a_real_study(project, notebook, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    monkeypatch.chdir(project)
    monkeypatch.setenv("SSTKD_DATA_ROOT", "data/tiny")  # the tiny env's data root
    namespace: dict = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{notebook}", "exec"), namespace)  # noqa: S102
    if notebook == "lineage.ipynb":
        assert set(namespace["table"]["method"]) >= {"teacher", "baseline", "sstkd"}
        assert namespace["lineage"]["teacher"]["run_id"]


def test_data_stages_through_the_kedro_session_api(tmp_path, monkeypatch):
    """synthetic -> ingestion -> preprocessing in-process, as a notebook or another tool would run them."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    for item in ("conf", "src", "pyproject.toml", ".telemetry"):
        if (ROOT / item).is_dir():
            shutil.copytree(ROOT / item, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / item, tmp_path / item)
    from sstkd import pipeline_registry

    # The session hands its parameters to the registry; forget them after this test (other tests follow in-process).
    monkeypatch.setattr(pipeline_registry, "_run_parameters", None)
    monkeypatch.chdir(tmp_path)
    bootstrap_project(tmp_path)
    with KedroSession.create(project_path=tmp_path, env="tiny") as session:
        session.run(pipeline_names=["data"])
    statistics = json.loads((tmp_path / "data/tiny/08_reporting/dataset_statistics.json").read_text())
    assert statistics["num_images"] == 16 and sum(statistics["class_pixel_counts"]) == 16 * 64 * 64
    info = json.loads((tmp_path / "data/tiny/02_intermediate/dataset_info.json").read_text())
    assert info["hflip_safe"] is False and info["samples"] == {"test": 8, "train": 16, "val": 8}


def test_kedro_run_env_trains_exactly_the_envs_methods(project):
    """`kedro run --env X` does not export KEDRO_ENV: the method list must come from the session itself."""
    env_dir = project / "conf" / "tiny_methods"
    shutil.copytree(project / "conf" / "tiny", env_dir)
    parameters = (env_dir / "parameters.yml").read_text().replace(
        "distillation:\n", "distillation:\n  run: [baseline, cwd]\n", 1)
    (env_dir / "parameters.yml").write_text(parameters)
    result = _run(project, "run", "--env", "tiny_methods", "--pipelines", "distillation")
    log = output(result)
    assert "cwd.seed_0.train_student" in log and "baseline.seed_0.train_student" in log and "sstkd.seed_0" not in log
    assert (project / "data/tiny/06_models/students/cwd/seed_0.pt").is_file()


def test_params_on_the_command_line_choose_the_methods(project):
    before = (project / "data/tiny/06_models/students/baseline/seed_0.pt").stat().st_mtime_ns
    log = output(_run(project, "run", "--env", "tiny", "--pipelines", "distillation",
                      "--params", "distillation.run=[skd+cwd]"))  # Kedro splits --params at commas: `+` joins
    assert "skd.seed_0.train_student" in log and "cwd.seed_0.train_student" in log and "baseline.seed_0" not in log
    assert (project / "data/tiny/06_models/students/skd/seed_0.pt").is_file()
    assert (project / "data/tiny/06_models/students/baseline/seed_0.pt").stat().st_mtime_ns == before


def test_a_cache_older_than_the_ingested_data_is_refused(project):
    mask = sorted((project / "data/tiny/01_raw/texture_mosaics/masks").glob("train_*.png"))[0]
    original = mask.read_bytes()
    ingested = {path: path.read_bytes() for path in (project / "data/tiny/02_intermediate").iterdir()}
    from PIL import Image

    try:
        values = np.array(Image.open(mask))
        values[0, 0] = (values[0, 0] + 1) % 10  # the data changes: a new fingerprint
        Image.fromarray(values).save(mask)
        _run(project, "run", "--env", "tiny", "--pipelines", "ingestion")
        result = _run(project, "run", "--env", "tiny", "--pipelines", "teacher", check=False)
        assert result.returncode != 0
        assert "the training cache does not match the ingested data" in output(result)
        assert "kedro run --pipelines preprocessing" in output(result)
    finally:  # the study as it was, for the other tests (what ingesting the original mask again would write)
        mask.write_bytes(original)
        for path, content in ingested.items():
            path.write_bytes(content)


def _mlflow_runs(project):
    with sqlite3.connect(project / "mlflow.db") as db:
        return dict(db.execute("select run_uuid, status from runs").fetchall())


@pytest.mark.slow
def test_a_second_run_is_refused_and_a_killed_run_is_marked_failed(project):
    lock = project / "data" / ".sstkd-run.lock"
    already = set(_mlflow_runs(project))
    first = subprocess.Popen([str(KEDRO), "run", "--env", "tiny", "--pipelines", "teacher", "--params",
                              "teacher.training.epochs=200,training.seed=11,data_root=data/tiny"], cwd=project,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, DO_NOT_TRACK="1", MPLBACKEND="Agg"))
    try:
        deadline = time.time() + 120
        running = []
        while time.time() < deadline and not running:
            time.sleep(0.5)
            running = [r for r, status in _mlflow_runs(project).items() if r not in already and status == "RUNNING"]
        assert running, "the first run never started"
        assert str(first.pid) in lock.read_text()
        second = _run(project, "run", "--env", "tiny", "--pipelines", "ingestion", check=False)
        assert second.returncode != 0
        assert f"another run is using this project's data (pid {first.pid}" in output(second)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert _mlflow_runs(project)[running[0]] == "RUNNING"  # killed: nobody closed it
    _run(project, "run", "--env", "tiny", "--pipelines", "ingestion")  # the lock died with its holder
    assert _mlflow_runs(project)[running[0]] == "FAILED"


@pytest.mark.slow
def test_the_second_builtin_dataset_runs_the_whole_study(tmp_path):
    project = copy_project(tmp_path / "project")
    _run(project, "run", "--env", "tiny", "--params", "synthetic.family=dead_leaves")
    info = json.loads((project / "data/tiny/02_intermediate/dataset_info.json").read_text())
    assert info["num_classes"] == 8 and info["classes"][0] == "checkerboard" and info["hflip_safe"] is True
    report = pd.read_csv(project / "data/tiny/08_reporting/report.csv")
    assert list(report["model"]) == ["teacher", "baseline.seed_0", "pixel_kd.seed_0", "sstkd.seed_0"]
    assert report["miou"].between(0, 100).all()
    assert "One seed: no interval and no verdict can be given" in (project / "data/tiny/08_reporting/report.md").read_text()
