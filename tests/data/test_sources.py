import numpy as np
import pytest

from sstkd.data.cache import build_cache
from sstkd.data.manifest import build_manifest
from sstkd.data.sources import (
    ADE20K_CLASSES,
    CITYSCAPES_CLASSES,
    CITYSCAPES_LABEL_TO_TRAIN,
    IGNORE_INDEX,
    open_source,
    voc_palette,
)

from .layouts import (
    make_ade20k,
    make_camvid,
    make_cityscapes,
    make_generic,
    make_voc,
    write_ade20k_object_info,
)


def _train_ids(source, split="train"):
    manifest = build_manifest(source, [split], workers=1)
    return build_cache(source.root, manifest, source.label_lut, None, workers=1)[split]["masks"][0]


def test_cityscapes_label_ids_map_to_19_train_ids(tmp_path):
    make_cityscapes(tmp_path)
    source = open_source("cityscapes", tmp_path)
    assert source.num_classes == 19 and source.classes == CITYSCAPES_CLASSES
    assert {r.split for r in source.records} == {"train", "val", "test"}
    assert source.records[0].sample_id == "aachen_000000_000019"
    ids = _train_ids(source)
    # 7 road->0, 8 sidewalk->1, 26 car->13, 0 unlabeled->255, 33 bicycle->18, 24 person->11, 1 ego->255, 11 building->2
    expected = np.array([[0, 1, 13, 255], [18, 11, 255, 2]], dtype=np.uint8).repeat(6, 0).repeat(4, 1)
    np.testing.assert_array_equal(ids, expected)


def test_voc_palette_indices_are_class_ids(tmp_path):
    make_voc(tmp_path)
    source = open_source("voc", tmp_path)
    assert source.num_classes == 21
    assert [r.split for r in source.records] == ["train", "train", "val"]
    ids = _train_ids(source)
    assert set(np.unique(ids)) == {0, 1, 15, 20, IGNORE_INDEX}
    assert tuple(voc_palette()[15]) == (192, 128, 128)  # person, as in the official palette


def test_ade20k_shifts_ids_and_ignores_zero(tmp_path):
    make_ade20k(tmp_path)
    source = open_source("ade20k", tmp_path)
    assert source.num_classes == 150
    assert sorted({r.split for r in source.records}) == ["train", "val"]
    np.testing.assert_array_equal(np.unique(_train_ids(source)), [0, 6, 149, IGNORE_INDEX])


def test_camvid_void_is_ignored(tmp_path):
    make_camvid(tmp_path)
    source = open_source("camvid", tmp_path)
    assert source.num_classes == 11
    np.testing.assert_array_equal(np.unique(_train_ids(source)), [0, 3, 10, IGNORE_INDEX])


def test_generic_layout_reads_classes_and_splits(tmp_path):
    make_generic(tmp_path)
    source = open_source("generic", tmp_path)
    assert source.classes == ["a", "b", "c"]
    manifest = build_manifest(source, ["train", "val", "test"], workers=2)
    assert list(manifest.groupby("split").size().sort_index()) == [1, 2, 1]
    assert manifest["image_sha1"].str.len().eq(40).all()


def test_unknown_layout_and_missing_root_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown layout 'kitti'"):
        open_source("kitti", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_source("cityscapes", tmp_path / "nowhere")


def test_cityscapes_definitions_match_the_official_table():
    # the published 19 evaluated classes (Cordts et al. 2016, cityscapesScripts labels.py)
    assert CITYSCAPES_CLASSES[:3] == ["road", "sidewalk", "building"] and CITYSCAPES_CLASSES[-1] == "bicycle"
    assert len(CITYSCAPES_CLASSES) == 19 and CITYSCAPES_LABEL_TO_TRAIN[26] == 13  # car
    assert sorted(CITYSCAPES_LABEL_TO_TRAIN.values()) == list(range(19))
    assert 0 not in CITYSCAPES_LABEL_TO_TRAIN and 34 not in CITYSCAPES_LABEL_TO_TRAIN  # unlabeled; no id 34


@pytest.mark.parametrize("kind, folder", [("txt", "ADEChallengeData2016"), ("csv", "ADEChallengeData2016"),
                                          ("csv", "")])
def test_ade20k_class_names_come_from_object_info(tmp_path, kind, folder):
    make_ade20k(tmp_path)
    write_ade20k_object_info(tmp_path / folder, kind)
    classes = open_source("ade20k", tmp_path).classes
    assert classes[:3] == ["wall", "building", "class 3"] and len(classes) == 150


def test_ade20k_without_object_info_uses_the_built_in_official_names(tmp_path, caplog):
    make_ade20k(tmp_path)
    with caplog.at_level("INFO", logger="sstkd.data.sources"):
        classes = open_source("ade20k", tmp_path).classes
    assert classes == ADE20K_CLASSES and len(set(classes)) == 150
    assert classes[:4] == ["wall", "building", "sky", "floor"] and classes[12] == "person" and classes[-1] == "flag"
    assert "built-in list" in caplog.text


@pytest.mark.parametrize("damage, message", [
    (lambda text: text.replace("Idx", "Index"), "expected the header"),
    (lambda text: text.replace("\n7\t", "\nseven\t"), "line 8: expected 5 fields"),
    (lambda text: "\n".join(text.splitlines()[:100]), "lists 99 classes"),
])
def test_a_malformed_object_info_fails_naming_the_file(tmp_path, damage, message):
    make_ade20k(tmp_path)
    path = write_ade20k_object_info(tmp_path / "ADEChallengeData2016", "txt")
    path.write_text(damage(path.read_text()))
    with pytest.raises(ValueError, match=message) as error:
        open_source("ade20k", tmp_path)
    assert str(path) in str(error.value)
