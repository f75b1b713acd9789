"""Training outside the Kedro process: data-parallel workers, or concurrent students in worker processes.

Data-parallel: ``training.nproc`` workers per node run :func:`train_network` under DDP (NCCL on GPUs, Gloo on
CPU) through torch's elastic launcher (torchrun's engine); the node gets rank 0's result back and writes it through
the catalog as usual. For several machines, run the same ``kedro run`` on each with ``training.nnodes`` (e.g.
``"2"``) and a shared ``training.rdzv_endpoint`` (``host:port`` of one of them); rendezvous is torch's c10d store.

Concurrent students (``kedro run --runner sstkd.runner.StudentThreadRunner``, seed by seed, or Kedro's
``ThreadRunner``): each student node's thread hands its training to a pool of worker processes, one student per
process with a fixed thread count, so students train side by side without sharing torch's global random state or
its threads: each ends weight for weight as it would alone, in a sequential run at the same thread count.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from sstkd.data.cache import ArrayCache
from sstkd.data.ragged import RaggedArray
from sstkd.logs import PLAIN_DATE_FORMAT, PLAIN_FORMAT
from sstkd.training.recipe import train_network

log = logging.getLogger(__name__)


def _free_local_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def _like(cache: dict, splits: dict) -> ArrayCache:
    """``splits`` with what ``cache`` records of its data (fingerprint, resize): a worker's model fingerprint is the
    node's."""
    return ArrayCache(splits, source_fingerprint=getattr(cache, "source_fingerprint", None),
                      resized_to=getattr(cache, "resized_to", None))


def _by_reference(cache: dict) -> dict:
    """Memory-mapped arrays travel to the workers as file names (pickling would copy the whole cache)."""
    def reference(array):
        if isinstance(array, np.memmap):
            return ("memmap", array.filename)
        if isinstance(array, RaggedArray) and isinstance(array.data, np.memmap):
            return ("ragged", array.data.filename, array.shapes)
        return array
    return _like(cache, {split: {name: reference(array) for name, array in arrays.items()} for split, arrays in cache.items()})


def _reopen(cache: dict) -> dict:
    def reopened(value):
        if not isinstance(value, tuple):
            return value
        array = np.load(value[1], mmap_mode="r")
        return RaggedArray(array, value[2]) if value[0] == "ragged" else array
    return _like(cache, {split: {name: reopened(value) for name, value in arrays.items()} for split, arrays in cache.items()})


def _die_with_parent() -> None:
    """Linux: end this worker when the launching process dies (a SIGKILLed ``kedro run`` frees the project
    lock at once; a worker left running would go on writing checkpoints nobody holds the lock for)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the agent still ends workers on a normal exit
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker(kwargs: dict):
    """Runs in each worker process: join the process group, train, return this rank's result."""
    _die_with_parent()
    kwargs = kwargs | {"cache": _reopen(kwargs["cache"])}
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    dist.init_process_group(backend)
    try:
        payload, result = train_network(**kwargs)
        return payload, result.history
    finally:
        dist.destroy_process_group()


def run_data_parallel(nproc: int, kwargs: dict, nnodes: str = "1", rdzv_endpoint: str | None = None):
    """Train with ``nproc`` processes per node; returns ``{rank: (payload, history)}`` of this node's workers."""
    min_nodes, _, max_nodes = nnodes.partition(":")
    config = LaunchConfig(
        min_nodes=int(min_nodes),
        max_nodes=int(max_nodes or min_nodes),
        nproc_per_node=nproc,
        run_id=f"sstkd-{uuid.uuid4().hex[:8]}" if rdzv_endpoint is None else "sstkd",
        rdzv_backend="c10d",
        rdzv_endpoint=rdzv_endpoint or _free_local_endpoint(),
        max_restarts=0,
        monitor_interval=1,
    )
    return elastic_launch(config, _worker)(kwargs | {"cache": _by_reference(kwargs["cache"])})


_POOLS: dict[tuple[int, int], ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _exit_when_orphaned(parent: int) -> None:
    """End this pool worker when the ``kedro run`` that started it is gone (killed): a training left running would
    go on writing checkpoints nobody holds the project lock for. (Polled, because PR_SET_PDEATHSIG fires when the
    *thread* that forked the worker ends, and the runner's threads end before the process does.)"""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _start_pool_worker(parent: int, threads: int) -> None:
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)
    # plain lines on the run's stdout (the spawned interpreter imported Kedro, whose logging setup is for a console)
    logging.basicConfig(level=logging.INFO, format=PLAIN_FORMAT, datefmt=PLAIN_DATE_FORMAT, stream=sys.stdout, force=True)


def _train_in_worker(kwargs: dict):
    return train_network(**(kwargs | {"cache": _reopen(kwargs["cache"])}))


def train_in_worker_process(kwargs: dict, processes: int, threads: int):
    """:func:`train_network` in one of ``processes`` worker processes of ``threads`` torch threads each (started on
    first use and kept for the run's other students); returns its ``(payload, TrainingResult)``. Called from
    several threads at once, it runs up to ``processes`` trainings side by side and queues the others."""
    with _POOLS_LOCK:
        pool = _POOLS.get((processes, threads))
        if pool is None:
            pool = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_start_pool_worker, initargs=(os.getpid(), threads))
            _POOLS[(processes, threads)] = pool
    log.info("%s: handed to a worker process (%d side by side, %d thread%s each)", kwargs["name"], processes,
             threads, "" if threads == 1 else "s")
    return pool.submit(_train_in_worker, kwargs | {"cache": _by_reference(kwargs["cache"])}).result()
