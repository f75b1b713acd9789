"""``kedro run --runner sstkd.runner.StudentThreadRunner``: students side by side, seed by seed.

Kedro's ``ThreadRunner`` hands its ready nodes to its threads in no set order, so the students of a 5-seed study
start in a shuffled order of seeds. The teacher-output cache (``training.teacher_cache_root``) pays off when the
methods of one seed run close together: the first computes the teacher's outputs, the others read them, and a bound
that holds one seed's outputs is enough. This runner's threads take the ready node of the smallest seed first (the
data, teacher and report nodes, which have none, before any student), and it has as many threads as the machine has
cores, as ``training.concurrent_students`` has worker processes by default: a student's thread waits for its
worker, so with fewer workers than threads students would queue there in the order their threads got to it. With
``training.concurrent_students=N``, give the runner as many threads: ``--runner-params max_workers=N``.

The order is taken from the nodes Kedro submits in one go (a 50 ms pause after the last submission): it decides
how well the cache is used, never what a student learns.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from concurrent.futures import Executor, Future

from kedro.pipeline import Pipeline
from kedro.runner import ThreadRunner

from sstkd.study import split_model_name

SUBMISSIONS_SETTLE_S = 0.05  # the runner submits its ready nodes in one loop: take the first once it has ended


def node_order(task) -> tuple:
    """``(-1, name)`` for a node outside a student's namespace, ``(seed, name)`` for a student's."""
    node = getattr(task, "node", None)
    namespace = getattr(node, "namespace", None) or ""
    seed = split_model_name(namespace)[1]
    return (-1 if seed is None else seed, getattr(node, "name", ""))


class OrderedExecutor(Executor):
    """``workers`` threads that run the pending call of the smallest ``order`` first."""

    def __init__(self, workers: int, order=node_order):
        self._order, self._pending, self._sequence = order, [], itertools.count()
        self._condition = threading.Condition()
        self._last_submission = -float("inf")
        self._closed = False
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = Future()
        with self._condition:
            if self._closed:
                raise RuntimeError("cannot submit to an executor that was shut down")
            heapq.heappush(self._pending, (self._order(fn), next(self._sequence), future, fn, args, kwargs))
            self._last_submission = time.monotonic()
            self._condition.notify_all()
        return future

    def _next(self):
        with self._condition:
            while True:
                quiet = time.monotonic() - self._last_submission
                if self._pending and quiet >= SUBMISSIONS_SETTLE_S:
                    return heapq.heappop(self._pending)[2:]
                if self._closed and not self._pending:
                    return None
                self._condition.wait(timeout=SUBMISSIONS_SETTLE_S if self._pending else None)

    def _work(self) -> None:
        while (item := self._next()) is not None:
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - the future carries it to the runner
                future.set_exception(error)

    def __exit__(self, error_type, error, traceback) -> bool:
        # a failed node (or Ctrl-C) ends the run now: students still queued are not trained first
        self.shutdown(wait=True, cancel_futures=error_type is not None)
        return False

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._condition:
            self._closed = True
            if cancel_futures:
                for *_, future, _fn, _args, _kwargs in self._pending:
                    future.cancel()
                self._pending.clear()
            self._condition.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()


class StudentThreadRunner(ThreadRunner):
    def _get_required_workers_count(self, pipeline: Pipeline) -> int:
        return self._max_workers  # Kedro's default: one per core, as training.concurrent_students's

    def _get_executor(self, max_workers: int) -> Executor:
        return OrderedExecutor(max_workers)
