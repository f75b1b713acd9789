"""Data-parallel training with 2 CPU processes (Gloo) through the elastic launcher the pipeline uses."""

import numpy as np
import torch

from sstkd.training.launch import run_data_parallel
from sstkd.training.recipe import train_network

from . import helpers


def test_two_gloo_ranks_agree_and_match_a_single_process_on_the_same_global_batch(tmp_path):
    cache = helpers.tiny_cache(n_train=8, n_val=4, size=40)
    # 8 samples, global batch 8: every step sees the same samples however they are split across ranks.
    training = helpers.config(epochs=2, batch_size=8, lr=0.01, crop_size=(32, 32))
    np.save(tmp_path / "images.npy", cache["train"]["images"])
    cache["train"]["images"] = np.load(tmp_path / "images.npy", mmap_mode="r")  # travels by file name
    kwargs = dict(name="ddp", cache=cache, dataset_info=helpers.INFO, statistics=helpers.STATS,
                  network_config=helpers.STUDENT, losses={"cross_entropy": {}}, training=training)
    results = run_data_parallel(2, kwargs)
    assert sorted(results) == [0, 1]
    rank0, rank1 = results[0][0]["state_dict"], results[1][0]["state_dict"]
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], msg=f"ranks differ at {key}")

    initial = train_network(**(kwargs | {"training": helpers.config(epochs=1, lr=0.0, batch_size=8)}))[0]["state_dict"]
    single = train_network(**kwargs)[0]["state_dict"]
    cosines = []
    for key, value in rank0.items():
        if value.is_floating_point() and "running" not in key and value.numel() > 100:
            ddp_step, single_step = (value - initial[key]).flatten(), (single[key] - initial[key]).flatten()
            if single_step.norm() > 0:
                cosines.append(torch.nn.functional.cosine_similarity(ddp_step, single_step, dim=0).item())
                ratio = (ddp_step.norm() / single_step.norm()).item()
                assert 0.7 < ratio < 1.4, (key, ratio)  # gradients are averaged, not summed, across ranks
    # Per-rank BatchNorm statistics (half the batch each) make the updates close, not identical.
    assert np.median(cosines) > 0.9, cosines
