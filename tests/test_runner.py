"""The project's thread runner takes the ready node of the smallest seed first, whatever order it is handed them in."""

import random
import threading
import time
from types import SimpleNamespace

import pytest

from sstkd.runner import OrderedExecutor, node_order


def _task(namespace, name):
    return SimpleNamespace(node=SimpleNamespace(namespace=namespace, name=name))


def test_node_order_puts_the_nodes_without_a_seed_first_then_students_seed_by_seed():
    tasks = [_task("sstkd.seed_1", "sstkd.seed_1.train_student"), _task(None, "train_teacher"),
             _task("baseline.seed_0", "baseline.seed_0.train_student"), _task("sstkd.seed_10", "x"),
             _task("sstkd.seed_2", "y")]
    assert [node_order(t)[0] for t in sorted(tasks, key=node_order)] == [-1, 0, 1, 2, 10]


def test_an_ordered_executor_runs_a_burst_of_submissions_smallest_first_on_its_threads():
    started, inside, most, lock = [], [0], [0], threading.Lock()

    def work(key):
        with lock:
            started.append(key)
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.02)
        with lock:
            inside[0] -= 1
        return key

    keys = [(seed, method) for seed in range(4) for method in ("baseline", "pixel_kd", "sstkd")]
    with OrderedExecutor(2, order=lambda call: call.key) as executor:
        futures = []
        for key in random.Random(0).sample(keys, len(keys)):
            call = lambda key=key: work(key)  # noqa: E731
            call.key = key
            futures.append(executor.submit(call))
        assert sorted(f.result(timeout=30) for f in futures) == sorted(keys)
    assert started == sorted(keys) and most[0] == 2


def test_an_ordered_executor_passes_a_failure_to_its_future_and_refuses_work_after_shutdown():
    executor = OrderedExecutor(1, order=lambda call: 0)
    failed = executor.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failed.result(timeout=30)
    assert executor.submit(lambda: 7).result(timeout=30) == 7
    executor.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        executor.submit(lambda: 1)
