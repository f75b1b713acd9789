"""Kedro datasets for what this project reads and writes. Every write is atomic: a failed node, a full disk or a
kill never leaves a half-written dataset, checkpoint, cache, table or figure behind (temporary file or folder +
rename, :mod:`sstkd.atomic`); Kedro's own file datasets write in place, so the catalog uses these instead."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from kedro.io import AbstractDataset, DatasetError

from sstkd.atomic import replaced_directory, write_bytes_atomically
from sstkd.data.cache import ArrayCache
from sstkd.data.ragged import RaggedArray
from sstkd.data.sources import SourceLayout, open_source
from sstkd.data.synthetic import MosaicSpec, write_texture_mosaics
from sstkd.errors import MissingFileError, UnreadableFileError, restore_or_rebuild
from sstkd.training.checkpoint import atomic_save, load_checkpoint

log = logging.getLogger(__name__)


def _stage_writing(model_file: Path) -> str:
    """The pipeline that writes a model file of the catalog (``teacher.pt``, ``students/<method>/seed_<n>.pt``)."""
    return "teacher" if Path(model_file).name == "teacher.pt" else "distillation"


def _open_array(path: Path, fix: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise MissingFileError("an array of the cache is missing", path, fix) from None
    except (ValueError, OSError) as error:  # a truncated .npy: "mmap length is greater than file size"
        raise UnreadableFileError(f"a truncated or corrupt cache array ({error})", path, fix) from error


def _shape_summary(array) -> list | dict:
    """A stacked array's shape; for a ragged one its item count and the range of its item shapes."""
    if isinstance(array, RaggedArray):
        return {"items": len(array), "smallest": array.shapes.min(axis=0).tolist(),
                "largest": array.shapes.max(axis=0).tolist()}
    return list(np.shape(array))


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
    """``{split: {name: ndarray}}`` stored as ``<path>/<split>/<name>.npy`` plus ``meta.json``; a
    :class:`RaggedArray` as its flat buffer ``<name>.npy`` and its ``<name>.shapes.npy``.

    Loading memory-maps the arrays, so a training process touches only the samples it reads. ``meta.json``
    records the fingerprint of the data the cache was decoded from, so a stale cache can be recognised.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> dict[str, dict[str, np.ndarray]]:
        meta_file = self._path / "meta.json"
        rebuild = "rerun `kedro run --pipelines preprocessing` (it rebuilds the cache from the raw data)"
        if not meta_file.exists():
            raise MissingFileError("no array cache", self._path, rebuild)
        try:
            meta = json.loads(meta_file.read_text())
            arrays = dict(meta["arrays"])
            ragged = {split: set(names) for split, names in dict(meta.get("ragged", {})).items()}
        except (ValueError, KeyError, TypeError) as error:
            raise UnreadableFileError(f"not an array cache's index ({error})", meta_file, rebuild) from error

        def opened(split: str, name: str):
            array = _open_array(self._path / split / f"{name}.npy", rebuild)
            if name not in ragged.get(split, ()):
                return array
            shapes_file = self._path / split / f"{name}.shapes.npy"
            try:
                return RaggedArray(array, np.asarray(_open_array(shapes_file, rebuild)))
            except ValueError as error:  # a buffer and a shapes table of different writes
                raise UnreadableFileError(f"a ragged cache array that does not match its shapes ({error})",
                                          shapes_file, rebuild) from error

        splits = {split: {name: opened(split, name) for name in names} for split, names in arrays.items()}
        return ArrayCache(splits, source_fingerprint=meta.get("source_fingerprint"), resized_to=meta.get("resized_to"))

    def save(self, data: dict[str, dict[str, np.ndarray]]) -> None:
        with replaced_directory(self._path, owner_file="meta.json") as staging:
            ragged = {}
            for split, arrays in data.items():
                (staging / split).mkdir()
                for name, array in arrays.items():
                    if isinstance(array, RaggedArray):  # the flat buffer plus its shapes index
                        np.save(staging / split / f"{name}.npy", array.data)
                        np.save(staging / split / f"{name}.shapes.npy", array.shapes)
                        ragged.setdefault(split, []).append(name)
                    else:
                        np.save(staging / split / f"{name}.npy", np.asarray(array))
            resized_to = getattr(data, "resized_to", None)
            meta = {"source_fingerprint": getattr(data, "source_fingerprint", None),
                    "resized_to": list(resized_to) if resized_to else None,
                    "arrays": {split: sorted(arrays) for split, arrays in data.items()},
                    "ragged": {split: sorted(names) for split, names in ragged.items()},
                    "shapes": {split: {k: _shape_summary(v) for k, v in arrays.items()} for split, arrays in data.items()}}
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
        # The file it came from travels with the payload, so errors about the model can name it.
        fix = restore_or_rebuild(self._filepath, _stage_writing(self._filepath))
        return load_checkpoint(self._filepath, fix=fix) | {"source_file": str(self._filepath)}

    def save(self, data: dict) -> None:
        atomic_save(data, self._filepath)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class PretrainedBackbonesDataset(AbstractDataset[dict, dict]):
    """The pretraining stage's backbone weights: ``<path>/<backbone>-<sha256[:12]>.pt`` (torchvision-format state
    dicts, loadable as ``backbone_weights``) and ``<path>/manifest.json`` describing them.

    Saved from ``{"corpus": {...}, "backbones": {name: {"state_dict": ..., **record}}}``; loaded as the manifest,
    each backbone's record gaining ``path`` (the file, relative to the working directory when under it, so a
    model's fingerprint holds no machine path). The file name carries the
    weights' hash, so a network that names the file has a fingerprint that changes with the weights.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> dict:
        manifest_file = self._path / "manifest.json"
        rebuild = "run `kedro run --pipelines pretraining` (or `dvc pull` / `dvc checkout` if DVC tracks it)"
        if not manifest_file.is_file():
            raise MissingFileError("no pretrained backbones", self._path, rebuild)
        try:
            manifest = json.loads(manifest_file.read_text())
        except ValueError as error:
            raise UnreadableFileError(f"not valid JSON ({error})", manifest_file, rebuild) from error
        missing = [record["file"] for record in manifest["backbones"].values()
                   if not (self._path / record["file"]).is_file()]
        if missing:
            raise MissingFileError(f"the pretrained weights {', '.join(missing)} listed in manifest.json are missing",
                                   self._path, rebuild)
        folder = self._path.resolve()
        if folder.is_relative_to(Path.cwd()):  # kedro runs from the project root: no machine path in fingerprints
            folder = folder.relative_to(Path.cwd())
        for record in manifest["backbones"].values():
            record["path"] = str(folder / record["file"])
        return manifest

    def save(self, data: dict) -> None:
        with replaced_directory(self._path, owner_file="manifest.json") as staging:
            backbones = {}
            for name, entry in data["backbones"].items():
                buffer = io.BytesIO()
                torch.save(entry["state_dict"], buffer)
                digest = hashlib.sha256(buffer.getvalue()).hexdigest()
                file = f"{name}-{digest[:12]}.pt"
                (staging / file).write_bytes(buffer.getvalue())
                backbones[name] = {k: v for k, v in entry.items() if k != "state_dict"} | {"file": file,
                                                                                            "sha256": digest}
            manifest = {"corpus": data.get("corpus", {}), "backbones": backbones}
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))

    def _exists(self) -> bool:
        return (self._path / "manifest.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class _AtomicFileDataset(AbstractDataset[Any, Any]):
    """A local file written through a temporary file + rename (``_filepath`` is what kedro-mlflow logs)."""

    def __init__(self, filepath: str, save_args: dict[str, Any] | None = None, load_args: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self._save_args = dict(save_args or {})
        self._load_args = dict(load_args or {})
        self.metadata = metadata

    def _encode(self, data: Any) -> bytes:
        raise NotImplementedError

    def _decode(self, raw: bytes) -> Any:
        raise NotImplementedError

    def load(self) -> Any:
        if not self._filepath.is_file():
            raise DatasetError(f"{self._filepath} does not exist yet: run the pipeline that writes it first")
        return self._decode(self._filepath.read_bytes())

    def save(self, data: Any) -> None:
        write_bytes_atomically(self._filepath, self._encode(data))

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "save_args": self._save_args}


class JSONDataset(_AtomicFileDataset):
    def _encode(self, data: Any) -> bytes:
        return (json.dumps(data, **({"indent": 2} | self._save_args)) + "\n").encode()

    def _decode(self, raw: bytes) -> Any:
        return json.loads(raw)


class CSVDataset(_AtomicFileDataset):
    def _encode(self, data: pd.DataFrame) -> bytes:
        return data.to_csv(**({"index": False} | self._save_args)).encode()

    def _decode(self, raw: bytes) -> pd.DataFrame:
        return pd.read_csv(io.BytesIO(raw), **self._load_args)


class TextDataset(_AtomicFileDataset):
    def _encode(self, data: str) -> bytes:
        return data.encode()

    def _decode(self, raw: bytes) -> str:
        return raw.decode()


class FigureDataset(_AtomicFileDataset):
    """A matplotlib figure saved as an image (format from the file suffix); the figure is closed after saving."""

    def _encode(self, figure) -> bytes:
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        figure.savefig(buffer, format=self._filepath.suffix.lstrip(".") or "png", **self._save_args)
        plt.close(figure)
        return buffer.getvalue()

    def _decode(self, raw: bytes) -> bytes:
        return raw
