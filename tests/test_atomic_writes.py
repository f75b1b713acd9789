"""Every artifact is written atomically; a full disk keeps the previous version and says which file it was.

The full disk is real: a 256 KiB tmpfs (mounting needs root, which CI and the project's machines have)."""

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DatasetError

from sstkd.atomic import DiskFullError, replaced_directory
from sstkd.catalog.datasets import ArrayCacheDataset, CSVDataset, FigureDataset, JSONDataset, TextDataset
from sstkd.data.cache import ArrayCache
from sstkd.training.checkpoint import atomic_save, load_checkpoint


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small_disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.decode().strip()})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _big_frame(rows=40_000):
    return pd.DataFrame({"sample_id": [f"id_{i:08d}" for i in range(rows)], "value": np.arange(rows)})


def test_a_full_disk_keeps_the_old_manifest_and_names_it(small_disk):
    path = small_disk / "manifest.csv"
    dataset = CSVDataset(str(path))
    good = pd.DataFrame({"sample_id": ["a", "b"], "split": ["train", "val"]})
    dataset.save(good)
    before = path.read_bytes()
    with pytest.raises(DatasetError, match=f"disk full while writing {path}"):  # Kedro wraps what the dataset raised
        dataset.save(_big_frame())
    assert path.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["manifest.csv"]  # no temporary file left behind


@pytest.mark.parametrize("dataset_class, good, bad", [
    (JSONDataset, {"fingerprint": "abc"}, {"rows": list(range(100_000))}),
    (TextDataset, "# report\n", "x" * 400_000),
])
def test_json_and_text_writers_are_atomic_on_a_full_disk(small_disk, dataset_class, good, bad):
    path = small_disk / "artifact"
    dataset = dataset_class(str(path))
    dataset.save(good)
    with pytest.raises(DatasetError, match="disk full while writing"):
        dataset.save(bad)
    assert dataset.load() == good


def test_a_checkpoint_on_a_full_disk_is_reported_and_the_old_one_kept(small_disk):
    path = small_disk / "teacher.pt"
    atomic_save({"state_dict": {"w": torch.zeros(4)}}, path)
    with pytest.raises(DiskFullError, match=f"disk full while writing {path}"):
        atomic_save({"state_dict": {"w": torch.zeros(200_000)}}, path)
    torch.testing.assert_close(load_checkpoint(path)["state_dict"]["w"], torch.zeros(4))


def test_the_array_cache_on_a_full_disk_keeps_the_previous_cache(small_disk):
    dataset = ArrayCacheDataset(str(small_disk / "cache"))
    small = ArrayCache({"train": {"images": np.zeros((2, 4, 4, 3), np.uint8)}}, source_fingerprint="old")
    dataset.save(small)
    big = ArrayCache({"train": {"images": np.zeros((40, 64, 64, 3), np.uint8)}}, source_fingerprint="new")
    with pytest.raises(DatasetError, match="disk full while writing"):
        dataset.save(big)
    kept = dataset.load()
    assert kept.source_fingerprint == "old" and kept["train"]["images"].shape == (2, 4, 4, 3)


def test_atomic_files_and_folders_get_ordinary_permissions(tmp_path):
    JSONDataset(str(tmp_path / "a.json")).save({"a": 1})
    with replaced_directory(tmp_path / "folder") as staging:
        (staging / "x").write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700


def test_csv_and_json_round_trip_and_figures_are_written(tmp_path):
    import matplotlib.pyplot as plt

    frame = pd.DataFrame({"sample_id": ["0001", "2007_000032"], "split": ["train", "val"]})
    dataset = CSVDataset(str(tmp_path / "m.csv"), load_args={"dtype": {"sample_id": str}})
    dataset.save(frame)
    pd.testing.assert_frame_equal(dataset.load(), frame)  # ids stay strings: the data fingerprint depends on them
    JSONDataset(str(tmp_path / "i.json")).save({"samples": {"train": 2}})
    assert json.loads((tmp_path / "i.json").read_text()) == {"samples": {"train": 2}}
    figure, axis = plt.subplots()
    axis.plot([0, 1])
    FigureDataset(str(tmp_path / "f.png")).save(figure)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_cache_writer_never_replaces_a_folder_it_did_not_write(tmp_path):
    thesis = tmp_path / "big_disk" / "thesis.tex"
    thesis.parent.mkdir()
    thesis.write_text("three years of work")
    dataset = ArrayCacheDataset(str(thesis.parent))  # a user moved training_cache onto an occupied folder
    with pytest.raises(DatasetError, match=r"refusing to replace .*big_disk: it is not empty \(thesis.tex"):
        dataset.save(ArrayCache({"train": {"images": np.zeros((1, 2, 2, 3), np.uint8)}}, source_fingerprint="x"))
    assert thesis.read_text() == "three years of work"
    cache = ArrayCacheDataset(str(tmp_path / "cache"))  # its own cache it replaces, as before
    for fingerprint in ("a", "b"):
        cache.save(ArrayCache({"train": {"images": np.zeros((1, 2, 2, 3), np.uint8)}}, source_fingerprint=fingerprint))
    assert cache.load().source_fingerprint == "b"
