"""Images of many sizes in one flat buffer, and the helpers that let every stage read either kind of cached split.

VOC and ADE20K images have their own sizes, and the papers train on random-scale crops of the originals and
evaluate at the original size; resizing them all to one size to stack them would change both. A
:class:`RaggedArray` keeps item ``i`` as ``data[offsets[i]:offsets[i + 1]].reshape(shapes[i])``: one ``.npy``
buffer (memory-mapped when loaded: random access, no pickling) plus a small shapes index. Same-size datasets keep
the stacked ``(N, H, W, ...)`` arrays; the helpers below accept both.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class RaggedArray:
    """``len(shapes)`` arrays of one dtype and number of dimensions, of different shapes, in one flat buffer.

    Indexing with an int returns a view of the buffer (read-only when the buffer is a read-only memmap), so a
    freshly allocated ragged array is filled with ``ragged[i][...] = item``.
    """

    def __init__(self, data: np.ndarray, shapes: np.ndarray):
        shapes = np.asarray(shapes, dtype=np.int64)
        if data.ndim != 1 or shapes.ndim != 2:
            raise ValueError(f"a ragged array needs a flat buffer and an (N, ndim) shapes table, got {data.shape} "
                             f"and {shapes.shape}")
        self.data, self.shapes = data, shapes
        self.offsets = np.concatenate([[0], np.cumsum(np.prod(shapes, axis=1))]).astype(np.int64)
        if self.offsets[-1] != len(data):
            raise ValueError(f"the shapes table describes {self.offsets[-1]} elements, the buffer holds {len(data)}")

    @classmethod
    def empty(cls, shapes, dtype) -> RaggedArray:
        shapes = np.asarray(shapes, dtype=np.int64)
        return cls(np.zeros(int(np.prod(shapes, axis=1).sum()), dtype=dtype), shapes)

    @classmethod
    def from_arrays(cls, items) -> RaggedArray:
        ragged = cls.empty([item.shape for item in items], items[0].dtype)
        for index, item in enumerate(items):
            ragged[index][...] = item
        return ragged

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"a ragged array is indexed by one int (its items differ in shape), got {type(index).__name__}")
        index = int(index) + (len(self) if index < 0 else 0)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return self.data[self.offsets[index]:self.offsets[index + 1]].reshape(self.shapes[index])

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[index] for index in range(len(self)))

    def __repr__(self) -> str:
        return f"RaggedArray({len(self)} items of {self.dtype}, {len(self.data)} elements)"


def item_sizes(array) -> np.ndarray:
    """``(N, 2)`` height and width of every item of a stacked ``(N, H, W, ...)`` or a ragged array."""
    if isinstance(array, RaggedArray):
        return array.shapes[:, :2]
    return np.tile(np.asarray(array.shape[1:3], dtype=np.int64), (len(array), 1))


def all_pixels(array) -> np.ndarray:
    """Every pixel of every item, ``(P, ...)`` (a view where the storage allows): for per-pixel statistics."""
    if isinstance(array, RaggedArray):
        trailing = {tuple(shape) for shape in array.shapes[:, 2:].tolist()}
        if len(trailing) != 1:
            raise ValueError(f"the items differ in more than their height and width: {sorted(trailing)}")
        return array.data.reshape(-1, *next(iter(trailing)))
    return array.reshape(-1, *array.shape[3:])


def most_common_size(array) -> tuple[int, int]:
    """The commonest ``(height, width)`` (the first of them on a tie): one input size to report a cost at."""
    sizes, first, counts = np.unique(item_sizes(array), axis=0, return_index=True, return_counts=True)
    best = max(range(len(sizes)), key=lambda i: (counts[i], -first[i]))
    return int(sizes[best][0]), int(sizes[best][1])


def same_size_batches(sizes: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices in batches of at most ``batch_size`` whose items share one size, so they stack without padding.

    Sizes are taken in the order they first appear and each size's indices ascending; one size gives the plain
    ``[0, b), [b, 2b), ...`` batches. Every index appears exactly once (a metric summed over the batches counts
    each image once, as one-at-a-time evaluation does).
    """
    sizes = np.asarray(sizes)
    if len(sizes) == 0:
        return []
    unique, first, inverse = np.unique(sizes, axis=0, return_index=True, return_inverse=True)
    batches = []
    for group in np.argsort(first, kind="stable"):
        members = np.flatnonzero(inverse.reshape(-1) == group)
        batches += [members[start:start + batch_size] for start in range(0, len(members), batch_size)]
    return batches


def stacked(array, indices) -> np.ndarray:
    """Items ``indices`` (of one size) as one ``(n, H, W, ...)`` array, copied out of any memmap."""
    if isinstance(array, RaggedArray):
        return np.stack([array[int(i)] for i in indices])
    return np.array(array[np.asarray(indices)])


def center_cropped(images, masks, indices) -> tuple[np.ndarray, np.ndarray]:
    """Items ``indices`` of images and masks stacked, each centre-cropped to the smallest height and width among
    them (every pixel kept is the image's own; same-size items are returned whole): for diagnostics and figures
    that need one batch, never for the metrics, which see every image at its own size."""
    indices = [int(i) for i in indices]
    sizes = item_sizes(images)[indices]
    height, width = int(sizes[:, 0].min()), int(sizes[:, 1].min())

    def crop(item):
        top, left = (item.shape[0] - height) // 2, (item.shape[1] - width) // 2
        return item[top:top + height, left:left + width]

    if not isinstance(images, RaggedArray) and not isinstance(masks, RaggedArray):
        return np.array(images[indices]), np.array(masks[indices])
    return np.stack([crop(images[i]) for i in indices]), np.stack([crop(masks[i]) for i in indices])
