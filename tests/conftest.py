import os

import pytest
import torch

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# `make test` runs the suite in one pytest-xdist worker per core: each worker and every `kedro run` it
# starts then uses one thread, so the two never fight over the cores. A plain `pytest` run keeps two threads
# unless OMP_NUM_THREADS says otherwise.
# An OMP_NUM_THREADS the user set is kept (OpenMP's list form "4,2": its first level).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1 and not os.environ.get("OMP_NUM_THREADS"):
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // _WORKERS))
_THREADS = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
torch.set_num_threads(int(_THREADS) if _THREADS.isdigit() and int(_THREADS) > 0 else 2)

from sstkd.data.synthetic import MosaicSpec, write_texture_mosaics  # noqa: E402


@pytest.fixture(scope="session")
def mosaic_root(tmp_path_factory):
    """A small texture-mosaic dataset in the generic layout, written once per test session."""
    root = tmp_path_factory.mktemp("mosaics") / "raw"
    write_texture_mosaics(MosaicSpec(seed=3, image_size=48, splits={"train": 12, "val": 4, "test": 4}), root)
    return root
