"""Data-parallel training with CPU processes (Gloo) through the elastic launcher the pipeline uses."""

import numpy as np
import pytest
import torch

from sstkd.models.segmenter import build_network
from sstkd.training.launch import run_data_parallel
from sstkd.training.recipe import train_network
from sstkd.training.seeding import seed_everything

from . import helpers

pytestmark = pytest.mark.slow  # process groups started and joined: run by `make test-all` (CI)


def _update_agreement(state, reference, initial):
    """Median cosine between two weight updates, and the ratio of their norms, over conv/linear weights."""
    cosines, ratios = [], []
    for key, value in state.items():
        if value.is_floating_point() and "running" not in key and value.numel() > 100:
            step, reference_step = (value - initial[key]).flatten(), (reference[key] - initial[key]).flatten()
            if reference_step.norm() > 0:
                cosines.append(torch.nn.functional.cosine_similarity(step, reference_step, dim=0).item())
                ratios.append((step.norm() / reference_step.norm()).item())
    return float(np.median(cosines)), float(np.median(ratios))


def test_ranks_agree_and_match_a_single_process_on_the_same_global_batch(tmp_path):
    cache = helpers.tiny_cache(n_train=16, n_val=4, size=72)
    # 16 samples, global batch 16: every step sees the same samples however they are split across ranks.
    training = helpers.config(epochs=2, batch_size=16, lr=0.01, crop_size=(64, 64))
    np.save(tmp_path / "images.npy", cache["train"]["images"])
    cache["train"]["images"] = np.load(tmp_path / "images.npy", mmap_mode="r")  # travels by file name
    kwargs = dict(name="ddp", cache=cache, dataset_info=helpers.INFO, statistics=helpers.STATS,
                  network_config=helpers.STUDENT, losses={"cross_entropy": {}}, training=training)
    two = run_data_parallel(2, kwargs)
    assert sorted(two) == [0, 1]
    rank0, rank1 = two[0][0]["state_dict"], two[1][0]["state_dict"]
    for key in (k for k in rank0 if "running_" not in k and "num_batches_tracked" not in k):
        torch.testing.assert_close(rank0[key], rank1[key], msg=f"ranks differ at {key}")
    for key in ("loss", "val_miou"):  # losses and confusion matrices are all-reduced: one history for all ranks
        assert [h[key] for h in two[0][1]] == [h[key] for h in two[1][1]]

    one = run_data_parallel(1, kwargs)[0][0]["state_dict"]
    single = train_network(**kwargs)[0]["state_dict"]
    seed_everything(training.seed)  # train_network builds the network right after seeding: same initial weights
    initial = build_network(helpers.STUDENT, helpers.INFO["num_classes"]).state_dict()

    cosine, ratio = _update_agreement(one, single, initial)
    assert cosine > 0.8 and 0.9 < ratio < 1.1, (cosine, ratio)  # only dropout masks land on other samples
    cosine, ratio = _update_agreement(rank0, single, initial)
    # Gradients are averaged, not summed, across ranks (a sum would double the step). The direction agrees
    # only broadly: SyncBatchNorm is CUDA-only, so on CPU each rank normalises over its half of the batch.
    assert 0.7 < ratio < 1.4 and cosine > 0.3, (cosine, ratio)


def test_cirkd_trains_data_parallel_with_its_memory_and_without_it(tmp_path):
    """CIRKD's queues stay out of DDP's buffer broadcast and its projection exists only when a memory term uses
    it: either mistake stops a two-process run (unused parameters at the second step, or buffer mismatch)."""
    teacher, _ = helpers.train(epochs=1, max_steps_per_epoch=1)
    cache = helpers.tiny_cache(n_train=16, n_val=4, size=48)
    np.save(tmp_path / "images.npy", cache["train"]["images"])
    cache["train"]["images"] = np.load(tmp_path / "images.npy", mmap_mode="r")
    for memory_weight in (0.1, 0.0):
        losses = {"cross_entropy": {}, "cirkd": {"pixel_memory": 64, "region_memory": 8, "pixel_contrast": 40,
                                                  "memory_pixel_weight": memory_weight,
                                                  "memory_region_weight": memory_weight}}
        kwargs = dict(name=f"ddp_cirkd_{memory_weight}", cache=cache, dataset_info=helpers.INFO,
                      statistics=helpers.STATS, network_config=helpers.STUDENT, losses=losses,
                      training=helpers.config(epochs=1, batch_size=8, crop_size=(32, 32), max_steps_per_epoch=2),
                      teacher_payload=teacher)
        ranks = run_data_parallel(2, kwargs)
        assert sorted(ranks) == [0, 1]
        history = ranks[0][1]
        assert len(history) == 1 and history[0]["loss_cirkd"] > 0, history
