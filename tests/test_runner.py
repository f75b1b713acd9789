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
    # two threads take the work: neighbours may begin in either order, seeds never out of order
    assert [seed for seed, _ in started] == sorted(seed for seed, _ in keys) and most[0] == 2
    assert all(sorted(started[i:i + 2]) == sorted(keys)[i:i + 2] for i in range(0, len(keys), 2))


def test_a_failure_inside_the_executors_block_cancels_what_is_still_queued():
    """A failed node ends the run without training the students queued behind it first."""
    ran = []
    with pytest.raises(KeyError), OrderedExecutor(1, order=lambda call: 0) as executor:
        blocker = threading.Event()
        executor.submit(blocker.wait, 30)
        queued = [executor.submit(ran.append, n) for n in range(3)]
        time.sleep(0.2)  # the first call holds the one thread until after the failure
        threading.Timer(0.3, blocker.set).start()
        raise KeyError("a node failed")
    assert all(f.cancelled() for f in queued) and ran == []


def test_an_ordered_executor_passes_a_failure_to_its_future_and_refuses_work_after_shutdown():
    executor = OrderedExecutor(1, order=lambda call: 0)
    failed = executor.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failed.result(timeout=30)
    assert executor.submit(lambda: 7).result(timeout=30) == 7
    executor.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        executor.submit(lambda: 1)
