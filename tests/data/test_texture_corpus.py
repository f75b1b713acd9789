import numpy as np
import pytest

from sstkd.data.texture_corpus import CORPUS_CLASSES, corpus_texture, render_corpus_image, texture_corpus


def test_images_are_a_pure_function_of_seed_and_index_and_classes_are_balanced():
    first, again = texture_corpus(0, 2, 32), texture_corpus(0, 2, 32)
    assert np.array_equal(first["images"], again["images"]) and np.array_equal(first["labels"], again["labels"])
    assert first["images"].shape == (2 * len(CORPUS_CLASSES), 32, 32, 3) and first["images"].dtype == np.uint8
    assert np.bincount(first["labels"], minlength=len(CORPUS_CLASSES)).tolist() == [2] * len(CORPUS_CLASSES)
    other_seed = texture_corpus(1, 2, 32)
    assert not np.array_equal(first["images"], other_seed["images"])
    shifted = texture_corpus(0, 2, 32, offset=len(CORPUS_CLASSES))  # the next images: a disjoint split
    assert np.array_equal(shifted["images"][0], render_corpus_image(0, len(CORPUS_CLASSES), 32)[0])
    assert not np.array_equal(shifted["images"], first["images"])


@pytest.mark.parametrize("name", CORPUS_CLASSES)
def test_every_class_is_a_finite_standardised_texture_and_not_flat(name):
    texture = corpus_texture(name, np.random.default_rng(0), 48)
    assert texture.shape == (48, 48) and np.isfinite(texture).all()
    assert abs(texture.mean()) < 1e-6 and texture.std() == pytest.approx(1.0, rel=1e-3)


def test_oriented_classes_differ_by_orientation():
    """A gabor_<angle> texture's spectral energy lies along its angle (the classes a flip would confuse)."""
    for angle in (0, 60, 90, 150):
        spectrum = np.abs(np.fft.fft2(corpus_texture(f"gabor_{angle}", np.random.default_rng(1), 64))) ** 2
        fy, fx = np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(64), indexing="ij")
        direction = np.angle(np.sum(spectrum * np.exp(2j * np.arctan2(fy, fx)))) / 2  # doubled-angle mean, mod pi
        difference = (np.rad2deg(direction) - angle + 90) % 180 - 90
        assert abs(difference) < 15, (angle, np.rad2deg(direction))


def test_an_unknown_class_names_the_known_ones():
    with pytest.raises(KeyError, match="gabor_0"):
        corpus_texture("stripes_45", np.random.default_rng(0), 16)
