"""Teacher outputs computed once and shared by every student that feeds the teacher the same batch.

The methods of one seed see the same batches (same seed: same order and augmentation), and the frozen teacher is
a pure function of its input, so its outputs for a batch are the same for every method. This cache keys them by
the teacher's fingerprint, the numerics they are computed under and the exact bytes of the input batch: a hit
returns exactly the tensors the teacher would have returned (a student trained with it ends weight for weight as
one trained without), and a batch that differs in one bit misses and is computed. Files are written atomically
(concurrent students of one seed may share a folder); the folder is kept under ``max_bytes`` by evicting the
least recently used files. That bound must hold one student's batches (its epochs x steps): a student's pass is
a cyclic scan, and under a smaller bound least-recently-used eviction deletes each batch before the next student
of the seed reads it, so every student computes every teacher output again; the cache warns when it sees that.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from sstkd.models.segmenter import SegmentationNetwork, SegmentationOutput
from sstkd.training.checkpoint import atomic_save

log = logging.getLogger(__name__)

EVICT_CHECK_EVERY = 64  # writes between two looks at the folder's size


class TeacherOutputCache:
    def __init__(self, folder: str | Path, teacher_fingerprint: str, numerics: str, max_bytes: int,
                 batches_per_student: int | None = None):
        """``batches_per_student``: how many batches one student feeds the teacher (every rank's), for the warning
        above; the training loop sets it, on its main process only."""
        self.folder = Path(folder)
        self.prefix = f"{teacher_fingerprint}|{numerics}|".encode()
        self.max_bytes = max_bytes
        self.batches_per_student = batches_per_student
        self.hits = self.misses = 0
        self._writes = 0

    def _file(self, images: torch.Tensor) -> Path:
        digest = hashlib.sha256(self.prefix)
        digest.update(f"{tuple(images.shape)}|{images.dtype}|".encode())
        digest.update(images.detach().contiguous().cpu().numpy().tobytes())
        key = digest.hexdigest()
        return self.folder / key[:2] / f"{key}.pt"

    def outputs(self, teacher: torch.nn.Module, images: torch.Tensor) -> SegmentationOutput:
        """``teacher(images)`` (under ``torch.no_grad``), from the cache when this exact batch was seen."""
        file = self._file(images)
        if file.is_file():
            try:
                stored = torch.load(file, map_location=images.device, weights_only=True)
                os.utime(file)  # recently used: evicted last
                fields = {key: _restored(value, key in stored["channels_last"])
                          for key, value in stored["outputs"].items()}
                if stored.get("logits_from_head"):
                    if type(teacher) is not SegmentationNetwork:  # wrapped (compiled): its own forward's bits
                        raise ValueError("logits derived by a plain network")
                    with torch.no_grad():
                        fields["logits"] = teacher.logits_from_head(fields["head_features"], images.shape[-2:])
                self.hits += 1
                return SegmentationOutput(**fields)
            except (OSError, RuntimeError, EOFError, ValueError):
                pass  # evicted meanwhile by another student, or unreadable: compute it again
        with torch.no_grad():
            output = teacher(images)
        self.misses += 1
        file.parent.mkdir(parents=True, exist_ok=True)
        fields = output._asdict()
        # the full-size logits are the head feature's classifier output upsampled: derived again on a hit (the
        # same ops on the same tensor, so the same bits), they need not fill 40% of the file
        from_head = type(teacher) is SegmentationNetwork and fields.get("head_features") is not None
        if from_head:
            del fields["logits"]
        atomic_save({"outputs": {key: None if value is None else value.detach().cpu() for key, value in fields.items()},
                     "channels_last": [key for key, value in fields.items() if value is not None and value.dim() == 4
                                       and not value.is_contiguous()
                                       and value.is_contiguous(memory_format=torch.channels_last)],
                     "logits_from_head": from_head}, file)
        self._writes += 1
        if self._writes == 1 and self.batches_per_student:
            self._warn_if_too_small(file.stat().st_size)
        if self._writes % EVICT_CHECK_EVERY == 0:
            self.evict()
        return output

    def _warn_if_too_small(self, batch_bytes: int) -> None:
        needed = batch_bytes * self.batches_per_student
        if needed > self.max_bytes:
            log.warning("teacher cache %s: one student's %d batches take %.1f GB (%.1f MB each), more than "
                        "training.teacher_cache_gb (%.1f): each batch is evicted before the next student of this "
                        "seed reads it, so every student computes the teacher again; raise training.teacher_cache_gb "
                        "to %d (disk space allowing) or drop training.teacher_cache_root", self.folder,
                        self.batches_per_student, needed / 2**30, batch_bytes / 2**20, self.max_bytes / 2**30,
                        -(-needed // 2**30))

    def summary(self) -> str:
        return f"teacher outputs: {self.hits} from the cache, {self.misses} computed"

    def evict(self) -> None:
        """Delete the least recently used files until the folder holds at most ``max_bytes``."""
        files = []
        for path in self.folder.glob("*/*.pt"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size


def _restored(value: torch.Tensor | None, channels_last: bool) -> torch.Tensor | None:
    """The stored tensor in the memory layout the teacher returned it in (same values; kernels see the same)."""
    if value is None or not channels_last:
        return value
    return value.contiguous(memory_format=torch.channels_last)
