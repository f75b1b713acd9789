import os

import pytest
import torch

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(2)

from sstkd.data.synthetic import MosaicSpec, write_texture_mosaics  # noqa: E402


@pytest.fixture(scope="session")
def mosaic_root(tmp_path_factory):
    """A small texture-mosaic dataset in the generic layout, written once per test session."""
    root = tmp_path_factory.mktemp("mosaics") / "raw"
    write_texture_mosaics(MosaicSpec(seed=3, image_size=48, splits={"train": 12, "val": 4, "test": 4}), root)
    return root
