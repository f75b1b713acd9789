"""Kedro datasets for what this project reads and writes. All writes are atomic: a failed node never leaves a
half-written dataset, checkpoint or cache behind (temporary file or folder + rename)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from sstkd.atomic import replaced_directory
from sstkd.data.sources import SourceLayout, open_source
from sstkd.data.synthetic import MosaicSpec, write_texture_mosaics
from sstkd.training.checkpoint import atomic_save, load_checkpoint

log = logging.getLogger(__name__)


class SegmentationSourceDataset(AbstractDataset[MosaicSpec, SourceLayout]):
    """A raw segmentation dataset in one of the layouts of :mod:`sstkd.data.sources`.

    ``load()`` scans it and returns a :class:`SourceLayout`. ``save(spec)`` generates the texture-mosaic dataset
    from a :class:`MosaicSpec` — only where ``generated: true`` (the embedded default), and only if the files on
    disk do not already match the spec. For a user's dataset (``generated: false``) saving does nothing: the
    files are the user's and are never written.
    """

    def __init__(self, path: str, layout: str = "generic", generated: bool = False,
                 options: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self._layout = layout
        self._generated = generated
        self._options = options or {}
        self.metadata = metadata

    def load(self) -> SourceLayout:
        return open_source(self._layout, self._path, **self._options)

    def save(self, data: MosaicSpec) -> None:
        if not self._generated:
            log.info("raw_dataset is the user's %s dataset at %s: nothing is generated", self._layout, self._path)
            return
        if write_texture_mosaics(data, self._path, progress=None):
            log.info("generated texture mosaics %s at %s", data.fingerprint(), self._path)
        else:
            log.info("texture mosaics %s already at %s: generation skipped", data.fingerprint(), self._path)

    def _exists(self) -> bool:
        return self._path.exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "layout": self._layout, "generated": self._generated}


class ArrayCacheDataset(AbstractDataset[dict, dict]):
    """``{split: {name: ndarray}}`` stored as ``<path>/<split>/<name>.npy`` plus ``meta.json``.

    Loading memory-maps the arrays, so a training process touches only the samples it reads.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> dict[str, dict[str, np.ndarray]]:
        meta_file = self._path / "meta.json"
        if not meta_file.exists():
            raise DatasetError(f"no array cache at {self._path}: run `kedro run --pipeline preprocessing` first")
        meta = json.loads(meta_file.read_text())
        return {split: {name: np.load(self._path / split / f"{name}.npy", mmap_mode="r") for name in names}
                for split, names in meta["arrays"].items()}

    def save(self, data: dict[str, dict[str, np.ndarray]]) -> None:
        with replaced_directory(self._path) as staging:
            for split, arrays in data.items():
                (staging / split).mkdir()
                for name, array in arrays.items():
                    np.save(staging / split / f"{name}.npy", np.asarray(array))
            meta = {"arrays": {split: sorted(arrays) for split, arrays in data.items()},
                    "shapes": {split: {k: list(np.shape(v)) for k, v in arrays.items()} for split, arrays in data.items()}}
            (staging / "meta.json").write_text(json.dumps(meta, indent=2))

    def _exists(self) -> bool:
        return (self._path / "meta.json").exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class TorchModelDataset(AbstractDataset[dict, dict]):
    """A trained network: ``{"network": config, "num_classes": K, "state_dict": ..., **metadata}``.

    Written atomically; read with ``torch.load(weights_only=True)`` (tensors and plain data only).
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> dict:
        return load_checkpoint(self._filepath)

    def save(self, data: dict) -> None:
        atomic_save(data, self._filepath)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
