import os

import pytest
from kedro.pipeline import Pipeline

from sstkd.hooks import LineageHooks
from sstkd.locking import ProjectBusyError, ProjectLock


def test_a_second_holder_is_refused_naming_the_first_and_a_release_frees_it(tmp_path):
    first, second = ProjectLock(tmp_path / "lock"), ProjectLock(tmp_path / "lock")
    first.acquire("kedro run --env tiny --pipelines teacher")
    with pytest.raises(ProjectBusyError, match=rf"pid {os.getpid()}, started .*: kedro run --env tiny --pipelines teacher"):
        second.acquire()
    first.acquire()  # the holder itself may ask again
    first.release()
    second.acquire()
    second.release()


def test_a_notebook_can_run_again_after_an_interrupted_run(tmp_path, monkeypatch):
    """Ctrl-C skips on_pipeline_error: the lock stays held by this process, which must not refuse itself."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    hooks = LineageHooks()
    run_params = {"project_path": str(tmp_path), "env": "tiny", "pipeline_names": ["teacher"]}
    hooks.before_pipeline_run(run_params, None, None)  # ... then KeyboardInterrupt: no release
    hooks.before_pipeline_run(run_params, None, None)  # the next session.run() in the same kernel
    with pytest.raises(ProjectBusyError):
        ProjectLock(tmp_path / "data" / ".sstkd-run.lock").acquire()  # another process would still be refused
    hooks.after_pipeline_run(Pipeline([]), None)
    ProjectLock(tmp_path / "data" / ".sstkd-run.lock").acquire()
