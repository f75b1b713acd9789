"""Run the project's real command-line tools in a throw-away copy of the project, as a user would."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEDRO = Path(sys.executable).with_name("kedro")
SSTKD = Path(sys.executable).with_name("sstkd")


def run(project: Path, *args: str, check: bool = True, command: Path = KEDRO, env: dict | None = None,
        timeout: int = 600) -> subprocess.CompletedProcess:
    environment = dict(os.environ, DO_NOT_TRACK="1", MPLBACKEND="Agg", COLUMNS="200") | (env or {})
    result = subprocess.run([str(command), *args], cwd=project, capture_output=True, text=True, env=environment,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{command.name} {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


MAX_ERROR_LINES = 10


def short_error(result: subprocess.CompletedProcess, *expected: str) -> str:
    """The error message, after checking it is one, short, without a traceback, and says each of ``expected``."""
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    error = result.stderr.strip()
    assert error.startswith("Error: "), error
    assert len(error.splitlines()) <= MAX_ERROR_LINES, error
    for text in expected:
        assert text in error, f"{text!r} not in {error!r}"
    return error


def output(result: subprocess.CompletedProcess) -> str:
    """stdout + stderr with the console's line wrapping undone."""
    return " ".join((result.stdout + result.stderr).split())


def copy_project(path: Path) -> Path:
    """A copy of the project's code and configuration (a git repository, as users have it), with empty data/."""
    path.mkdir(parents=True, exist_ok=True)
    for item in ("conf", "src", "pyproject.toml", ".telemetry", "dvc.yaml"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, path / item, ignore=shutil.ignore_patterns("__pycache__", "local"))
        elif source.exists():
            shutil.copy(source, path / item)
    (path / "conf" / "local").mkdir(exist_ok=True)
    for layer in ("01_raw", "02_intermediate", "05_model_input", "06_models", "07_model_output", "08_reporting"):
        (path / "data" / layer).mkdir(parents=True)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-qm", "snapshot"], cwd=path, check=True)
    return path
