"""A tiny, fast training setup shared by the loop tests (and the kill/resume child process)."""

import json
import sys

import numpy as np

from sstkd.data.synthetic import MosaicSpec, render_mosaic
from sstkd.models.segmenter import NetworkConfig
from sstkd.training.loop import TrainingConfig
from sstkd.training.recipe import train_network

STUDENT = NetworkConfig(head="pspnet", backbone="resnet10", output_stride=16, head_channels=16)


def tiny_cache(n_train=16, n_val=8, size=48):
    spec = MosaicSpec(seed=5, image_size=size)
    def split(offset, n):
        pairs = [render_mosaic(spec, offset + i) for i in range(n)]
        return {"images": np.stack([p[0] for p in pairs]), "masks": np.stack([p[1] for p in pairs])}
    return {"train": split(0, n_train), "val": split(10_000, n_val)}


INFO = {"num_classes": 10, "classes": [str(i) for i in range(10)], "fingerprint": "tiny"}
STATS = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def config(**overrides):
    base = dict(epochs=3, batch_size=8, crop_size=(32, 32), progress=False, lr=0.02)
    return TrainingConfig(**(base | overrides))


def train(checkpoint_root=None, losses=None, cache=None, callbacks=(), **overrides):
    return train_network("student", cache or tiny_cache(), INFO, STATS, STUDENT, losses or {"cross_entropy": {}},
                         config(**overrides), checkpoint_root=checkpoint_root, callbacks=callbacks)


if __name__ == "__main__":  # child process of the kill/resume test: train, then print the history
    import torch

    torch.set_num_threads(1)
    payload, result = train(checkpoint_root=sys.argv[1], epochs=int(sys.argv[2]), warmup_epochs=float(sys.argv[3]))
    print("HISTORY=" + json.dumps([[round(h["val_miou"], 6), h["lr"]] for h in result.history]))
