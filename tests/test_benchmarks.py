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
