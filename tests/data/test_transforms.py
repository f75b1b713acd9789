import numpy as np
import torch
import torch.nn.functional as F

from sstkd.data.dataset import SegmentationArrays
from sstkd.data.sources import IGNORE_INDEX
from sstkd.data.transforms import TransformConfig, normalize, random_scale, train_transform

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _paired_sample(size=64, block=16):
    """An image whose red channel encodes the mask (class k ↔ red 20k), so geometry can be compared."""
    rng = np.random.default_rng(0)
    mask = np.repeat(np.repeat(rng.integers(0, 8, (size // block, size // block)), block, 0), block, 1)
    mask = mask.astype(np.uint8)
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 0] = mask * 20
    return image, mask


def test_image_and_mask_get_the_same_geometric_transform():
    image, mask = _paired_sample()
    config = TransformConfig(crop_size=(32, 32), scale_range=(0.6, 1.6), mean=MEAN, std=STD)
    for seed in range(20):
        image_t, mask_t = train_transform(image, mask, config, np.random.default_rng(seed))
        assert image_t.shape == (3, 32, 32) and mask_t.shape == (32, 32) and mask_t.dtype == torch.int64
        red = image_t[0] * STD[0] * 255 + MEAN[0] * 255
        labelled = mask_t != IGNORE_INDEX
        # Nearest-neighbour masks keep only original labels; away from label edges the image agrees with the mask.
        assert set(mask_t[labelled].unique().tolist()) <= set(np.unique(mask).tolist())
        padded = torch.nn.functional.pad(mask_t[None, None].float(), (1, 1, 1, 1), mode="replicate")
        neighbourhood = torch.nn.functional.unfold(padded, 3)[0].view(9, 32, 32)
        interior = labelled & (neighbourhood == mask_t.float()).all(dim=0)
        interior[[0, -1], :] = interior[:, [0, -1]] = False  # a label edge may lie just outside the crop
        agree = (red[interior] - 20 * mask_t[interior].float()).abs() < 1.0
        assert interior.float().mean() > 0.5 and agree.float().mean() > 0.99, seed


def test_padding_is_ignore_in_mask_and_mean_in_image():
    image, mask = _paired_sample(16, 4)
    config = TransformConfig(crop_size=(32, 32), scale_range=(1.0, 1.0), hflip=False, mean=MEAN, std=STD)
    image_t, mask_t = train_transform(image, mask, config, np.random.default_rng(0))
    assert (mask_t[16:, :] == IGNORE_INDEX).all() and (mask_t[:, 16:] == IGNORE_INDEX).all()
    assert (image_t[:, 16:, :] == 0).all()


def test_dataset_augmentation_depends_on_seed_epoch_index_only():
    image, mask = _paired_sample()
    images, masks = np.stack([image, image]), np.stack([mask, mask])
    config = TransformConfig(crop_size=(24, 24), mean=MEAN, std=STD)
    a = SegmentationArrays(images, masks, config, train=True, seed=1)
    b = SegmentationArrays(images, masks, config, train=True, seed=1)
    for ds in (a, b):
        ds.set_epoch(3)
    torch.testing.assert_close(a[1][0], b[1][0])
    b.set_epoch(4)
    assert not torch.equal(a[1][1], b[1][1]) or not torch.equal(a[1][0], b[1][0])


def test_eval_items_are_whole_normalised_images():
    image, mask = _paired_sample()
    ds = SegmentationArrays(image[None], mask[None], TransformConfig(mean=MEAN, std=STD), train=False)
    image_t, mask_t = ds[0]
    assert image_t.shape == (3, 64, 64)
    torch.testing.assert_close(mask_t, torch.from_numpy(mask).long())


def _reference_train_transform(image, mask, config, rng):
    """The definition: scale the whole image, normalise it, pad it bottom/right, crop at random, flip."""
    image_t, mask_t = torch.from_numpy(image).permute(2, 0, 1).float(), torch.from_numpy(mask)
    scale = random_scale(config, rng)
    size = max(1, round(mask.shape[0] * scale)), max(1, round(mask.shape[1] * scale))
    if size != mask.shape:
        image_t = F.interpolate(image_t[None], size=size, mode="bilinear", align_corners=False)[0]
        mask_t = F.interpolate(mask_t[None, None].float(), size=size, mode="nearest-exact")[0, 0].to(torch.uint8)
    image_t = normalize(image_t, config.mean, config.std)
    pad = (0, max(config.crop_size[1] - size[1], 0), 0, max(config.crop_size[0] - size[0], 0))
    image_t, mask_t = F.pad(image_t, pad, value=0.0), F.pad(mask_t, pad, value=IGNORE_INDEX)
    top = int(rng.integers(0, image_t.shape[1] - config.crop_size[0] + 1))
    left = int(rng.integers(0, image_t.shape[2] - config.crop_size[1] + 1))
    image_t = image_t[:, top:top + config.crop_size[0], left:left + config.crop_size[1]]
    mask_t = mask_t[top:top + config.crop_size[0], left:left + config.crop_size[1]]
    if config.hflip and rng.random() < 0.5:
        image_t, mask_t = image_t.flip(-1), mask_t.flip(-1)
    return image_t, mask_t.long()


def test_the_train_transform_is_its_definition_bit_for_bit_on_any_size_and_crop():
    """It normalises and pads only the crop's pixels (a crop's cost, not a scaled image's): the same numbers."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        height, width = (int(v) for v in rng.integers(8, 100, 2))
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        mask = rng.integers(0, 5, (height, width)).astype(np.uint8)
        config = TransformConfig(crop_size=tuple(int(v) for v in rng.integers(4, 90, 2)), scale_range=(0.5, 2.0),
                                 scale_step=0.1 if trial % 2 else None, mean=MEAN, std=STD)
        got = train_transform(image, mask, config, np.random.default_rng(trial))
        expected = _reference_train_transform(image, mask, config, np.random.default_rng(trial))
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1]), trial
