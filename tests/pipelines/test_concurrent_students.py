"""Students side by side: `kedro run --runner sstkd.runner.StudentThreadRunner` trains them in worker processes, each ending weight for
weight as in a sequential run at the same thread count, with the same MLflow record."""

import re

import mlflow
import pytest
import torch

from .cli import copy_project, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # two tiny studies, ~65 s: `make test-all` and CI run it

STUDENTS = [f"{method}/seed_{seed}" for method in ("baseline", "pixel_kd", "sstkd") for seed in (0, 1)]


def _student_runs(project):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("sstkd").experiment_id])
    return {r.info.run_name: r for r in runs if r.data.tags.get("sstkd.role") == "student"}, client


def test_concurrent_students_end_as_sequential_ones_and_are_recorded_alike(tmp_path):
    # one thread: the sequential run's, and each of the two workers' (the run's one thread / 2, at least 1)
    one_thread = {"OMP_NUM_THREADS": "1"}
    sequential, concurrent = copy_project(tmp_path / "sequential"), copy_project(tmp_path / "concurrent")
    run(sequential, "run", "--env", "tiny", "--params", "study.seeds=[0+1]", env=one_thread)
    result = run(concurrent, "run", "--env", "tiny", "--runner", "sstkd.runner.StudentThreadRunner",
                 "--runner-params", "max_workers=2",
                 "--params", "study.seeds=[0+1],training.concurrent_students=2", env=one_thread)
    for student in STUDENTS:
        expected = torch.load(sequential / f"data/tiny/06_models/students/{student}.pt", weights_only=True)
        got = torch.load(concurrent / f"data/tiny/06_models/students/{student}.pt", weights_only=True)
        assert got["state_dict"].keys() == expected["state_dict"].keys()
        assert all(torch.equal(got["state_dict"][k], v) for k, v in expected["state_dict"].items()), student
        assert got["best_val_miou"] == expected["best_val_miou"]
    # seed by seed, so a seed's methods share the teacher outputs the first of them cached
    started = re.findall(r"(\w+)\.seed_(\d): handed to a worker process", result.stdout)
    assert sorted(started) == sorted(tuple(s.split("/seed_")) for s in STUDENTS), result.stdout[-3000:]
    assert [seed for _, seed in started] == sorted(seed for _, seed in started)
    # the workers' epoch lines reach the run's log as plain lines; the parent logs their epochs in each model's run
    assert "sstkd.training.loop: sstkd.seed_1 epoch 1/1: loss" in result.stdout
    (expected_runs, client), (got_runs, got_client) = _student_runs(sequential), _student_runs(concurrent)
    assert sorted(got_runs) == sorted(expected_runs) == sorted(s.replace("/", ".") for s in STUDENTS)
    for name, expected_run in expected_runs.items():
        got_run = got_runs[name]
        assert got_run.info.status == "FINISHED" and got_run.data.tags["mlflow.parentRunId"]
        assert got_run.data.metrics.keys() == expected_run.data.metrics.keys()
        history = [m.value for m in client.get_metric_history(expected_run.info.run_id, "val_miou")]
        assert [m.value for m in got_client.get_metric_history(got_run.info.run_id, "val_miou")] == history
