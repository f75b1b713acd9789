"""The hand-run benchmarks that the READMEs quote must keep running on the project's configuration."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_protocol_cost_times_every_row_of_the_env_and_orders_its_projections():
    result = subprocess.run([sys.executable, "benchmarks/protocol_cost.py", "--env", "tiny", "--steps", "1",
                             "--budget", "0.001"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    # conf/tiny trains the default rows: each gets a line with a positive step time.
    for row in ("teacher", "baseline", "pixel_kd", "sstkd"):
        timed = [line for line in lines if line.split()[:1] == [row]]
        assert timed and float(timed[0].split()[1]) > 0, result.stdout
    baseline = next(line for line in lines if line.startswith("baseline")).split()
    assert float(baseline[2]) == 0  # no teacher forward in a baseline step
    seconds = [float(m) for m in re.findall(r"= +([0-9.]+) s \(over the 0.001-minute budget\)", result.stdout)]
    assert len(seconds) == 3, result.stdout
    one_process, teacher_free, workers = seconds
    assert one_process >= teacher_free >= workers > 0
