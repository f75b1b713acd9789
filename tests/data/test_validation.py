"""One test per kind of bad input: each fails before training, naming the file and the problem."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sstkd.data.manifest import DatasetValidationError, build_manifest, read_image
from sstkd.data.sources import open_source

from .layouts import make_ade20k, make_camvid, make_cityscapes, make_generic, make_voc, rgb, save_png


def _validate(root, layout="generic", splits=("train", "val", "test")):
    return build_manifest(open_source(layout, root), list(splits), workers=2)


def _problems(root, **kwargs):
    with pytest.raises(DatasetValidationError) as error:
        _validate(root, **kwargs)
    return str(error.value)


def test_clean_dataset_passes(tmp_path):
    make_generic(tmp_path)
    assert len(_validate(tmp_path)) == 4


def test_missing_mask(tmp_path):
    make_generic(tmp_path)
    (tmp_path / "masks" / "x2.png").unlink()
    assert "x2.png: no mask found for sample 'x2'" in _problems(tmp_path)


def test_mask_without_image(tmp_path):
    make_generic(tmp_path)
    save_png(tmp_path / "masks" / "stray.png", np.zeros((12, 16), np.uint8), mode="L")
    assert "stray.png: mask has no matching image" in _problems(tmp_path)


def test_corrupt_image(tmp_path):
    make_generic(tmp_path)
    data = (tmp_path / "images" / "x1.png").read_bytes()
    (tmp_path / "images" / "x1.png").write_bytes(data[: len(data) // 2])  # truncated
    assert "x1.png: unreadable or corrupt image" in _problems(tmp_path)


def test_mask_of_the_wrong_size(tmp_path):
    make_generic(tmp_path)
    save_png(tmp_path / "masks" / "y1.png", np.zeros((10, 16), np.uint8), mode="L")
    assert "y1.png: mask size 16x10 differs from image size 16x12" in _problems(tmp_path)


def test_unknown_label_id(tmp_path):
    make_generic(tmp_path)
    save_png(tmp_path / "masks" / "z1.png", np.full((12, 16), 7, np.uint8), mode="L")
    assert "z1.png: label id(s) [7] are not defined for the generic layout" in _problems(tmp_path)


def test_unknown_cityscapes_label_id(tmp_path):
    make_cityscapes(tmp_path)
    mask = next((tmp_path / "gtFine" / "val").rglob("*_labelIds.png"))
    save_png(mask, np.full((12, 16), 40, np.uint8), mode="L")
    assert "label id(s) [40] are not defined for the cityscapes layout" in _problems(tmp_path, layout="cityscapes")


def test_rgb_mask_is_rejected(tmp_path):
    make_generic(tmp_path)
    save_png(tmp_path / "masks" / "x1.png", rgb())
    assert "x1.png: unreadable mask" in _problems(tmp_path) and "single-channel" in _problems(tmp_path)


def test_empty_split(tmp_path):
    make_generic(tmp_path)
    (tmp_path / "splits" / "test.txt").write_text("")
    assert "split 'test' is empty" in _problems(tmp_path)


def test_duplicate_ids(tmp_path):
    make_generic(tmp_path)
    (tmp_path / "splits" / "val.txt").write_text("y1\nx1\n")
    assert "sample id 'x1' appears more than once" in _problems(tmp_path)


def test_all_problems_are_reported_at_once(tmp_path):
    make_generic(tmp_path)
    (tmp_path / "masks" / "x2.png").unlink()
    save_png(tmp_path / "masks" / "y1.png", np.zeros((3, 3), np.uint8), mode="L")
    with pytest.raises(DatasetValidationError) as error:
        _validate(tmp_path)
    assert len(error.value.problems) == 2


def test_a_split_naming_missing_ids_reports_every_one_with_the_other_problems(tmp_path):
    make_generic(tmp_path)
    (tmp_path / "splits" / "train.txt").write_text("x1\nghost\nx2\nphantom\n")
    data = (tmp_path / "images" / "y1.png").read_bytes()
    (tmp_path / "images" / "y1.png").write_bytes(data[: len(data) // 2])  # an unrelated corrupt image
    with pytest.raises(DatasetValidationError) as error:
        _validate(tmp_path)
    problems = error.value.problems
    split_file = tmp_path / "splits" / "train.txt"
    assert f"{split_file}: lists 'ghost' but {tmp_path / 'images'} has no image with that name" in problems
    assert any("lists 'phantom'" in p for p in problems)
    assert any("y1.png: unreadable or corrupt image" in p for p in problems)
    assert len(problems) == 3, problems


@pytest.mark.parametrize("how", ["empty file", "no file"])
def test_an_empty_split_is_reported_without_false_orphan_masks(tmp_path, how):
    make_generic(tmp_path)
    if how == "empty file":
        (tmp_path / "splits" / "test.txt").write_text("\n")
    else:
        (tmp_path / "splits" / "test.txt").unlink()
    with pytest.raises(DatasetValidationError) as error:
        _validate(tmp_path)
    assert error.value.problems == [f"split 'test' is empty: no samples found for it under {tmp_path}"]


def test_a_voc_split_naming_missing_ids_reports_them_all(tmp_path):
    make_voc(tmp_path)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\nmissing_a\nmissing_b\n")
    with pytest.raises(DatasetValidationError) as error:
        _validate(tmp_path, layout="voc", splits=("train", "val"))
    assert sum("lists 'missing_" in p for p in error.value.problems) == 2 and len(error.value.problems) == 2


@pytest.mark.parametrize("layout, maker, empty", [
    ("cityscapes", make_cityscapes, "leftImg8bit/test"),
    ("ade20k", make_ade20k, "ADEChallengeData2016/images/validation"),
    ("camvid", make_camvid, "val"),
])
def test_orphan_masks_are_only_masks_whose_image_is_missing(tmp_path, layout, maker, empty):
    maker(tmp_path)
    for image in (tmp_path / empty).rglob("*.*"):
        image.unlink()  # the images of one split are gone; their masks really have no image
    source = open_source(layout, tmp_path)
    assert source.orphan_masks and all(Path(m).suffix == ".png" for m in source.orphan_masks)
    assert not source.problems
    make_generic(tmp_path / "generic")
    assert open_source("generic", tmp_path / "generic").orphan_masks == []


def test_palette_png_image_is_read_as_rgb(tmp_path):
    make_generic(tmp_path)
    Image.fromarray(rgb()).convert("P").save(tmp_path / "images" / "x1.png")
    assert len(_validate(tmp_path)) == 4


def _png_rgb16(path, array):
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), written by hand: signature, IHDR, IDAT, IEND."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width, _ = array.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in array)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_a_16_bit_greyscale_image_is_scaled_not_saturated(tmp_path):
    make_generic(tmp_path)
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16).repeat(12, 0).repeat(4, 1)
    Image.fromarray(values).save(tmp_path / "images" / "x1.png")
    assert Image.open(tmp_path / "images" / "x1.png").mode == "I;16"
    image = read_image(tmp_path / "images" / "x1.png")
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, ::4, 0], [0, 1, 128, 255])
    assert (image[..., 0] == image[..., 2]).all()
    Image.fromarray(values.astype(">u2")).save(tmp_path / "x1_big_endian.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "x1_big_endian.tif")[0, ::4, 1], [0, 1, 128, 255])
    assert len(_validate(tmp_path)) == 4  # validation decodes the same way


def test_a_16_bit_rgb_image_is_scaled(tmp_path):
    values = np.zeros((12, 16, 3), np.uint16)
    values[..., 0], values[..., 1], values[..., 2] = 65535, 32768, 256
    _png_rgb16(tmp_path / "rgb16.png", values)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb16.png")[0, 0], [255, 128, 1])


def test_odd_image_modes_convert_or_are_refused_naming_the_file(tmp_path):
    make_generic(tmp_path)
    base = rgb()
    Image.fromarray(base).convert("CMYK").save(tmp_path / "images" / "x1.jpg")
    (tmp_path / "images" / "x1.png").unlink()
    Image.fromarray(np.dstack([base, np.full(base.shape[:2], 7, np.uint8)])).save(tmp_path / "images" / "x2.png")
    Image.fromarray(base[..., 0]).convert("LA").save(tmp_path / "images" / "y1.png")
    assert read_image(tmp_path / "images" / "x1.jpg").shape == (12, 16, 3)
    np.testing.assert_array_equal(read_image(tmp_path / "images" / "x2.png"), base)  # alpha dropped
    np.testing.assert_array_equal(read_image(tmp_path / "images" / "y1.png")[..., 1], base[..., 0])
    assert len(_validate(tmp_path)) == 4
    Image.fromarray(np.full((12, 16), 0.5, np.float32)).save(tmp_path / "images" / "z1.tif")
    (tmp_path / "images" / "z1.png").unlink()
    assert f"{tmp_path / 'images' / 'z1.tif'}: floating-point image (mode F)" in _problems(tmp_path)


def test_an_image_too_small_to_train_on_is_rejected_naming_it(tmp_path):
    make_generic(tmp_path)
    save_png(tmp_path / "images" / "x1.png", rgb(1, 1))
    save_png(tmp_path / "masks" / "x1.png", np.zeros((1, 1), np.uint8), mode="L")
    assert "x1.png: image is 1x1, too small to train on (each side must be at least 8 pixels)" in _problems(tmp_path)
