import hashlib
import json

import numpy as np
import pytest

from sstkd.data.synthetic import (
    STATISTICAL_CLASSES,
    STRUCTURAL_CLASSES,
    TEXTURE_CLASSES,
    MosaicSpec,
    _texture_field,
    render_mosaic,
    write_texture_mosaics,
)


def _tree_digest(root):
    digest = hashlib.sha1()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_gives_same_bytes_and_other_seed_differs(tmp_path):
    spec = MosaicSpec(seed=7, image_size=32, splits={"train": 3, "val": 2})
    write_texture_mosaics(spec, tmp_path / "a")
    write_texture_mosaics(spec, tmp_path / "b")
    write_texture_mosaics(MosaicSpec(seed=8, image_size=32, splits={"train": 3, "val": 2}), tmp_path / "c")
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")


def test_layout_and_skip_when_present(tmp_path):
    spec = MosaicSpec(seed=1, image_size=32, splits={"train": 2, "val": 1, "test": 1})
    root = tmp_path / "raw"
    assert write_texture_mosaics(spec, root) is True
    assert sorted(p.name for p in (root / "splits").iterdir()) == ["test.txt", "train.txt", "val.txt"]
    assert len(list((root / "images").glob("*.png"))) == 4 == len(list((root / "masks").glob("*.png")))
    mtime = (root / "classes.json").stat().st_mtime_ns
    assert write_texture_mosaics(spec, root) is False  # same fingerprint: skipped
    assert (root / "classes.json").stat().st_mtime_ns == mtime
    assert write_texture_mosaics(MosaicSpec(seed=2, image_size=32, splits={"train": 2}), root) is True
    assert len(list((root / "images").glob("*.png"))) == 2  # replaced whole, no stale files
    assert not list(tmp_path.glob(".raw.*"))  # no staging folder left


def test_classes_are_balanced_and_present():
    spec = MosaicSpec(seed=0, image_size=64)
    counts = np.zeros(len(TEXTURE_CLASSES))
    for index in range(200):
        _, mask = render_mosaic(spec, index)
        counts += np.bincount(mask.ravel(), minlength=len(TEXTURE_CLASSES))
    share = counts / counts.sum()
    assert share.min() > 0.5 / len(TEXTURE_CLASSES) and share.max() < 2.0 / len(TEXTURE_CLASSES)
    assert len(STRUCTURAL_CLASSES) == len(STATISTICAL_CLASSES) >= 4


def _dominant_orientation(field):
    spectrum = np.abs(np.fft.fft2(field - field.mean())) ** 2
    fy = np.fft.fftfreq(field.shape[0])[:, None]
    fx = np.fft.fftfreq(field.shape[1])[None, :]
    angle = np.degrees(np.arctan2(-fy, fx)) % 180
    return float(angle.ravel()[spectrum.ravel().argmax()])


def test_structural_classes_differ_by_orientation():
    rng = np.random.default_rng(0)
    for name, expected in (("stripes_0", 0), ("stripes_45", 45), ("stripes_90", 90), ("stripes_135", 135)):
        found = _dominant_orientation(_texture_field(name, rng, 128))
        assert min(abs(found - expected), 180 - abs(found - expected)) < 15, (name, found)


def test_statistical_classes_differ_by_distribution():
    rng = np.random.default_rng(0)
    gaussian = _texture_field("gaussian_grain", rng, 128)
    binary = _texture_field("binary_grain", rng, 128)
    # Same spread, different shape: a two-valued field has (near) zero mass around its mean.
    assert abs(gaussian.std() - binary.std()) / gaussian.std() < 0.3
    assert (np.abs(binary) < 0.2).mean() < 0.01 < (np.abs(gaussian) < 0.2).mean()
    coarse = _texture_field("coarse_grain", rng, 128)
    fine_corr = np.corrcoef(gaussian[:, :-3].ravel(), gaussian[:, 3:].ravel())[0, 1]
    coarse_corr = np.corrcoef(coarse[:, :-3].ravel(), coarse[:, 3:].ravel())[0, 1]
    assert coarse_corr > fine_corr + 0.3
    assert _texture_field("faint_smooth", rng, 128).std() < 0.5 * gaussian.std()
    sparse = _texture_field("sparse_speckle", rng, 128)
    assert (sparse > sparse.mean()).mean() < 0.1


def test_no_class_is_a_constant_colour():
    spec = MosaicSpec(seed=0, image_size=64)
    colours = {}
    for index in range(60):
        image, mask = render_mosaic(spec, index)
        for class_id in np.unique(mask):
            colours.setdefault(int(class_id), []).append(image[mask == class_id].mean(axis=0))
    for class_id, means in colours.items():
        assert np.std(np.array(means), axis=0).max() > 10, TEXTURE_CLASSES[class_id]


def test_mosaics_declare_that_flips_change_classes_and_training_refuses_flips(tmp_path):
    import pytest

    from sstkd.data.sources import open_source
    from sstkd.models.segmenter import NetworkConfig
    from sstkd.training.loop import TrainingConfig
    from sstkd.training.recipe import train_network

    write_texture_mosaics(MosaicSpec(seed=1, image_size=32, splits={"train": 2, "val": 1}), tmp_path)
    info = open_source("generic", tmp_path).info()
    assert info["hflip_safe"] is False
    # Mirroring a 45-degree grating gives a 135-degree one: the label would be wrong.
    field = _texture_field("stripes_45", np.random.default_rng(0), 64)
    assert 120 < _dominant_orientation(field[:, ::-1]) < 150
    with pytest.raises(ValueError, match="training.hflip is on, but this dataset's classes change"):
        train_network("x", {}, info, {}, NetworkConfig(), {"cross_entropy": {}}, TrainingConfig(hflip=True))


def test_the_generator_never_writes_into_a_users_dataset(tmp_path):
    from sstkd.data.synthetic import ForeignDataError

    from .layouts import make_cityscapes, make_generic

    spec = MosaicSpec(seed=1, image_size=32, splits={"train": 2})
    for make in (make_cityscapes, make_generic):
        root = tmp_path / make.__name__
        make(root)
        before = _tree_digest(root)
        with pytest.raises(ForeignDataError, match=f"refusing to write into {root}"):
            write_texture_mosaics(spec, root)
        assert _tree_digest(root) == before
    # Its own output, with one foreign file added by a user, is refused too, naming the file.
    ours = tmp_path / "ours"
    write_texture_mosaics(spec, ours)
    (ours / "images" / "my_photo.jpg").write_bytes(b"x")
    with pytest.raises(ForeignDataError, match="images/my_photo.jpg"):
        write_texture_mosaics(MosaicSpec(seed=2, image_size=32, splits={"train": 2}), ours)
    assert (ours / "images" / "my_photo.jpg").exists()
    # A generated-looking name the recorded spec did not produce (it made train_00000..00001) is foreign too.
    (ours / "images" / "my_photo.jpg").unlink()
    (ours / "images" / "train_00500.png").write_bytes(b"x")
    with pytest.raises(ForeignDataError, match="images/train_00500.png"):
        write_texture_mosaics(MosaicSpec(seed=2, image_size=32, splits={"train": 2}), ours)


def test_a_users_folder_that_copied_the_mosaics_classes_json_is_still_refused(tmp_path):
    from sstkd.data.synthetic import ForeignDataError

    template = tmp_path / "template"
    write_texture_mosaics(MosaicSpec(seed=1, image_size=32, splits={"train": 2}), template)
    user = tmp_path / "user"
    (user / "images").mkdir(parents=True)
    (user / "classes.json").write_text((template / "classes.json").read_text())  # started from our template
    (user / "images" / "field_00000.png").write_bytes(b"user data")
    with pytest.raises(ForeignDataError, match="images/field_00000.png"):
        write_texture_mosaics(MosaicSpec(seed=2, image_size=32, splits={"train": 2}), user)
    assert (user / "images" / "field_00000.png").read_bytes() == b"user data"


def test_the_generator_replaces_its_own_output_and_marks_it(tmp_path):
    from sstkd.data.synthetic import GENERATED_MARKER

    root = tmp_path / "raw"
    write_texture_mosaics(MosaicSpec(seed=1, image_size=32, splits={"train": 2}), root)
    assert (root / GENERATED_MARKER).is_file()
    (root / GENERATED_MARKER).unlink()  # a folder written before the marker existed is still recognised
    assert write_texture_mosaics(MosaicSpec(seed=2, image_size=32, splits={"train": 3}), root) is True
    assert len(list((root / "images").glob("*.png"))) == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_texture_mosaics(MosaicSpec(seed=1, image_size=32, splits={"train": 1}), empty) is True


def test_dead_leaves_are_a_second_deterministic_family_with_all_its_classes(tmp_path):
    from sstkd.data.dead_leaves import LEAF_CLASSES, leaf_texture

    spec = MosaicSpec(seed=4, image_size=64, splits={"train": 3}, family="dead_leaves")
    assert spec.classes == LEAF_CLASSES and spec.fingerprint() != MosaicSpec(seed=4, image_size=64).fingerprint()
    first, again = render_mosaic(spec, 1), render_mosaic(spec, 1)
    np.testing.assert_array_equal(first[0], again[0])
    counts = np.zeros(len(LEAF_CLASSES))
    for index in range(60):
        counts += np.bincount(render_mosaic(spec, index)[1].ravel(), minlength=len(LEAF_CLASSES))
    assert (counts > 0).all() and counts.max() < 4 * counts.min()
    for name in LEAF_CLASSES:
        texture = leaf_texture(name, np.random.default_rng(0), 64)
        assert abs(texture.mean()) < 1e-6 and abs(texture.std() - 1) < 1e-6, name
    write_texture_mosaics(spec, tmp_path / "leaves")
    meta = json.loads((tmp_path / "leaves" / "classes.json").read_text())
    assert meta["classes"] == list(LEAF_CLASSES) and meta["hflip_safe"] is True  # random orientations: flips safe


def test_dead_leaves_contrast_is_lower_than_the_mosaics():
    def mean_local_contrast(spec):  # mean neighbour difference: texture contrast (region edges are sparse)
        return np.mean([np.abs(np.diff(render_mosaic(spec, i)[0].astype(float), axis=1)).mean() for i in range(20)])

    leaves = MosaicSpec(seed=0, image_size=64, family="dead_leaves")
    assert mean_local_contrast(leaves) < mean_local_contrast(MosaicSpec(seed=0, image_size=64))


def test_layered_textures_are_a_third_deterministic_family_whose_layout_changes_only_the_local_energy(tmp_path):
    from scipy.ndimage import uniform_filter

    from sstkd.data.layered_textures import LAYERED_CLASSES, layered_texture, micro_texture

    spec = MosaicSpec(seed=4, image_size=64, splits={"train": 3}, family="layered")
    assert spec.classes == LAYERED_CLASSES and len(LAYERED_CLASSES) == 16
    assert spec.fingerprint() != MosaicSpec(seed=4, image_size=64, family="dead_leaves").fingerprint()
    first, again = render_mosaic(spec, 2), render_mosaic(spec, 2)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    counts = np.zeros(len(LAYERED_CLASSES))
    for index in range(80):
        counts += np.bincount(render_mosaic(spec, index)[1].ravel(), minlength=len(LAYERED_CLASSES))
    assert (counts > 0).all() and counts.max() < 5 * counts.min()
    for micro in ("grating", "crosshatch", "grain", "speckle"):
        texture = micro_texture(micro, np.random.default_rng(0), 96)
        assert abs(texture.mean()) < 1e-6 and abs(texture.std() - 1) < 1e-6, micro
    # The layout is a variance-only cue: smoothed over a few fine periods, the texture's mean stays near zero
    # while its local energy switches between full and faint.
    for name in LAYERED_CLASSES:
        texture = layered_texture(LAYERED_CLASSES.index(name), np.random.default_rng(1), 128)
        local_mean = uniform_filter(texture, 7)[16:-16, 16:-16]
        local_energy = uniform_filter(texture**2, 7)[16:-16, 16:-16]
        assert np.abs(local_mean).mean() < 0.35 * np.sqrt(local_energy).mean(), name
        spread = np.percentile(local_energy, 90) / np.percentile(local_energy, 10)
        if name.endswith("_plain"):
            assert spread < 6, (name, spread)
        elif not name.startswith("speckle") and not name.endswith("_blobs"):
            assert spread > 6, (name, spread)  # switched between full and faint amplitude
    write_texture_mosaics(spec, tmp_path / "layered")
    meta = json.loads((tmp_path / "layered" / "classes.json").read_text())
    assert meta["classes"] == list(LAYERED_CLASSES) and meta["hflip_safe"] is True
