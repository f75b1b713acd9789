"""Images at their own sizes (VOC, ADE20K): the ragged cache, and every stage that reads it."""

import json

import numpy as np
import pytest
import torch
from kedro.io import DatasetError
from torch import nn

from sstkd.catalog.datasets import ArrayCacheDataset
from sstkd.data.cache import build_cache
from sstkd.data.dataset import SegmentationArrays
from sstkd.data.manifest import build_manifest, read_image, read_mask
from sstkd.data.ragged import RaggedArray, center_cropped, item_sizes, most_common_size, same_size_batches
from sstkd.data.sources import IGNORE_INDEX, open_source
from sstkd.data.statistics import dataset_statistics
from sstkd.data.transforms import TransformConfig, random_scale
from sstkd.errors import UnreadableFileError
from sstkd.evaluation.evaluate import evaluate_network
from sstkd.models.segmenter import SegmentationOutput, build_network
from sstkd.training.loop import TrainingConfig, validate

from .layouts import make_ade20k_mixed, make_voc_mixed, mixed_sizes, rgb

NORMALIZATION = {"mean": [0.5] * 3, "std": [0.25] * 3}


def _ragged_split(count=10, seed=0):
    rng = np.random.default_rng(seed)
    sizes = mixed_sizes(count, seed)
    images = [rgb(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    masks = [rng.integers(0, 3, (h, w)).astype(np.uint8) for h, w in sizes]
    for mask in masks:
        mask[0, 0] = IGNORE_INDEX
    return RaggedArray.from_arrays(images), RaggedArray.from_arrays(masks)


def test_a_ragged_array_returns_each_item_at_its_own_shape_and_refuses_what_it_cannot_index():
    items = [np.arange(6, dtype=np.uint8).reshape(2, 3), np.full((4, 1), 9, np.uint8), np.zeros((1, 5), np.uint8)]
    ragged = RaggedArray.from_arrays(items)
    assert len(ragged) == 3 and len(ragged.data) == 6 + 4 + 5
    for got, expected in zip(ragged, items, strict=True):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(ragged[-1], items[2])
    assert item_sizes(ragged).tolist() == [[2, 3], [4, 1], [1, 5]]
    with pytest.raises(IndexError):
        ragged[3]
    with pytest.raises(TypeError, match="indexed by one int"):
        ragged[0:2]
    with pytest.raises(ValueError, match="describes 15 elements, the buffer holds 14"):
        RaggedArray(ragged.data[:-1], ragged.shapes)


@pytest.mark.parametrize("make, layout, options", [(make_voc_mixed, "voc", {"use_sbd_aug": False}),
                                                   (make_ade20k_mixed, "ade20k", {})])
def test_images_of_many_sizes_are_cached_at_their_own_size_without_a_cache_size(tmp_path, make, layout, options):
    make(tmp_path / "raw")
    source = open_source(layout, tmp_path / "raw", **options)
    manifest = build_manifest(source, ["train", "val"], workers=2)
    cache = build_cache(source.root, manifest, source.label_lut, None, workers=2)
    dataset = ArrayCacheDataset(str(tmp_path / "cache"))
    dataset.save(cache)
    loaded = dataset.load()
    for split, rows in manifest.groupby("split"):
        images, masks = loaded[split]["images"], loaded[split]["masks"]
        assert isinstance(images, RaggedArray) and isinstance(images.data, np.memmap)
        assert item_sizes(images).tolist() == rows[["height", "width"]].to_numpy().tolist()
        assert len({tuple(size) for size in item_sizes(images).tolist()}) > 5  # sizes and aspects differ
        for index, row in enumerate(rows.itertuples()):
            np.testing.assert_array_equal(images[index], read_image(source.root / row.image_path))
            np.testing.assert_array_equal(masks[index], source.label_lut[read_mask(source.root / row.mask_path)])
    # a cache size still resizes every image to it, stacked
    resized = build_cache(source.root, manifest, source.label_lut, (20, 30), workers=1)
    assert resized["val"]["images"].shape == (12, 20, 30, 3)


def test_a_ragged_cache_whose_shapes_index_does_not_match_its_buffer_is_refused_naming_the_file(tmp_path):
    images, masks = _ragged_split()
    dataset = ArrayCacheDataset(str(tmp_path / "cache"))
    dataset.save({"val": {"images": images, "masks": masks}})
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["ragged"] == {"val": ["images", "masks"]}
    np.save(tmp_path / "cache" / "val" / "masks.shapes.npy", masks.shapes[:-1])
    with pytest.raises(DatasetError, match="does not match its shapes .*masks.shapes.npy: rerun") as error:
        dataset.load()
    assert isinstance(error.value.__cause__, UnreadableFileError)


def test_same_size_batches_hold_every_index_once_and_one_size_each():
    sizes = np.array(mixed_sizes(40))
    batches = same_size_batches(sizes, 3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(40))
    assert all(len(batch) <= 3 and len({tuple(sizes[i]) for i in batch}) == 1 for batch in batches)
    assert max(len(batch) for batch in batches) == 3  # the repeated size is batched
    one_size = same_size_batches(np.tile([[8, 8]], (7, 1)), 3)
    assert [batch.tolist() for batch in one_size] == [[0, 1, 2], [3, 4, 5], [6]]


def test_statistics_of_a_ragged_split_are_those_of_all_its_pixels():
    images, masks = _ragged_split()
    stats = dataset_statistics(images, masks, ["a", "b", "c"])
    pixels = np.concatenate([image.reshape(-1, 3) for image in images]) / 255.0
    labels = np.concatenate([mask.ravel() for mask in masks])
    assert stats["num_images"] == 10 and stats["num_pixels"] == len(labels)
    assert stats["ignored_pixels"] == 10
    assert stats["class_pixel_counts"] == np.bincount(labels[labels != 255], minlength=3).tolist()
    np.testing.assert_allclose(stats["mean"], pixels.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["std"], pixels.std(0), atol=1e-6)


def test_training_items_are_crops_of_the_original_and_evaluation_items_the_whole_image():
    images, masks = _ragged_split()
    config = TransformConfig(crop_size=(32, 32), scale_range=(0.5, 2.0), scale_step=0.1, mean=(0.5,) * 3,
                             std=(0.25,) * 3)
    train = SegmentationArrays(images, masks, config, train=True)
    evaluation = SegmentationArrays(images, masks, config, train=False)
    for index in range(len(images)):
        image, mask = train[index]
        assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
        image, mask = evaluation[index]
        assert tuple(mask.shape) == tuple(images.shapes[index][:2]) == tuple(image.shape[1:])
    with pytest.raises(ValueError, match="differ in size from their masks, e.g. item 0"):
        SegmentationArrays(images, RaggedArray.from_arrays([m.T for m in masks]), config, train=False)


def test_a_scale_step_draws_each_scale_of_the_published_grid():
    config = TransformConfig(scale_range=(0.5, 2.0), scale_step=0.1)
    rng = np.random.default_rng(0)
    drawn = np.round([random_scale(config, rng) for _ in range(2000)], 6)
    assert sorted(set(drawn.tolist())) == [round(0.5 + k / 10, 6) for k in range(16)]  # CIRKD: 0.5 + randint(0, 15)/10
    assert np.bincount(np.round((drawn - 0.5) * 10).astype(int)).min() > 80  # each about 2000 / 16 = 125 times


class _RedThreshold(nn.Module):
    """Class 1 where the (normalised) red channel is positive, else class 0: a prediction known pixel by pixel."""

    def forward(self, images):
        red = images[:, :1]
        return SegmentationOutput(torch.cat([-red, red], dim=1), red, red, None)


def test_evaluation_scores_each_image_at_its_own_size_pixel_by_pixel():
    images, masks = _ragged_split(count=12)
    expected = np.zeros((3, 3), np.int64)
    for image, mask in zip(images, masks, strict=True):
        prediction = (image[..., 0].astype(float) / 255 - 0.5 > 0).astype(int)
        valid = mask != IGNORE_INDEX
        np.add.at(expected, (mask[valid], prediction[valid]), 1)
    for batch_size in (1, 4):
        metrics = evaluate_network(_RedThreshold(), images, masks, 3, NORMALIZATION, batch_size=batch_size)
        assert metrics["confusion_matrix"] == expected.tolist()


def test_same_size_batches_give_the_one_at_a_time_confusion_matrix_in_evaluation_and_validation():
    torch.manual_seed(0)
    network = build_network({"head": "pspnet", "backbone": "resnet10", "output_stride": 16, "head_channels": 16}, 3)
    images, masks = _ragged_split(count=16)
    one_at_a_time = evaluate_network(network, images, masks, 3, NORMALIZATION, batch_size=1)
    batched = evaluate_network(network, images, masks, 3, NORMALIZATION, batch_size=8)
    assert batched["confusion_matrix"] == one_at_a_time["confusion_matrix"]
    assert sum(map(sum, batched["confusion_matrix"])) == sum(int((m != IGNORE_INDEX).sum()) for m in masks)
    dataset = SegmentationArrays(images, masks, TransformConfig(mean=(0.5,) * 3, std=(0.25,) * 3), train=False)
    during_training = validate(network, dataset, 3, TrainingConfig(batch_size=8, bf16=False), torch.device("cpu"))
    assert during_training["confusion_matrix"] == one_at_a_time["confusion_matrix"]


def test_figures_and_diagnostics_get_one_batch_of_centre_crops_and_a_cost_at_the_commonest_size():
    images, masks = _ragged_split(count=8)
    batch_images, batch_masks = center_cropped(images, masks, [1, 2, 3])
    sizes = item_sizes(images)[[1, 2, 3]]
    assert batch_images.shape == (3, sizes[:, 0].min(), sizes[:, 1].min(), 3)
    top, left = (images[2].shape[0] - batch_images.shape[1]) // 2, (images[2].shape[1] - batch_images.shape[2]) // 2
    np.testing.assert_array_equal(batch_masks[1], masks[2][top:top + batch_masks.shape[1], left:left + batch_masks.shape[2]])
    assert most_common_size(images) == tuple(mixed_sizes(8)[0])  # every fourth image has the first size
    stacked_images = np.zeros((5, 6, 7, 3), np.uint8)
    assert center_cropped(stacked_images, np.zeros((5, 6, 7), np.uint8), [0, 4])[0].shape == (2, 6, 7, 3)
    assert most_common_size(stacked_images) == (6, 7)


def test_a_memory_mapped_ragged_cache_travels_to_ddp_workers_by_file_name_not_by_copy(tmp_path):
    import pickle

    from sstkd.training.launch import _by_reference, _reopen

    images, masks = _ragged_split()
    dataset = ArrayCacheDataset(str(tmp_path / "cache"))
    dataset.save({"train": {"images": images, "masks": masks}})
    loaded = dataset.load()
    sent = pickle.dumps(_by_reference(loaded))
    assert len(sent) < 4096 < len(images.data)  # the shapes index and a file name, not the pixels
    assert loaded.resized_to is None and loaded.source_fingerprint is None
    loaded.resized_to, loaded.source_fingerprint = (64, 64), "abc"  # travels with the arrays (the model fingerprint)
    reopened = _reopen(pickle.loads(pickle.dumps(_by_reference(loaded))))
    assert (reopened.resized_to, reopened.source_fingerprint) == ((64, 64), "abc")
    received = reopened["train"]
    assert isinstance(received["images"], RaggedArray) and isinstance(received["images"].data, np.memmap)
    for index in range(len(images)):
        np.testing.assert_array_equal(received["images"][index], images[index])
        np.testing.assert_array_equal(received["masks"][index], masks[index])


def test_a_model_trained_on_resized_images_is_not_up_to_date_for_the_images_at_their_own_size(tmp_path):
    from sstkd.data.cache import ArrayCache
    from sstkd.models.segmenter import NetworkConfig
    from sstkd.training.recipe import training_fingerprint

    def fingerprint(cache):
        return training_fingerprint("baseline.seed_0", NetworkConfig(), {"cross_entropy": {}}, TrainingConfig(),
                                    {"fingerprint": "data"}, None, cache)

    own_sizes = ArrayCache({}, "data")
    assert fingerprint(own_sizes) == fingerprint(None)  # models trained before the cache recorded sizes stay current
    assert fingerprint(ArrayCache({}, "data", resized_to=(128, 128))) not in (fingerprint(own_sizes),
                                                                              fingerprint(ArrayCache({}, "data", (64, 64))))
    images, masks = _ragged_split()
    dataset = ArrayCacheDataset(str(tmp_path / "cache"))
    dataset.save(ArrayCache({"val": {"images": images, "masks": masks}}, "data", resized_to=(20, 30)))
    assert dataset.load().resized_to == (20, 30)
