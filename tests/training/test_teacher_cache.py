"""The teacher-output cache is exact: students trained with it end weight for weight as without it, and the
methods of one seed share the teacher's outputs of their (identical) batches."""

import torch

from sstkd.models.segmenter import NetworkConfig, build_network
from sstkd.training.recipe import train_network
from sstkd.training.teacher_cache import TeacherOutputCache

from . import helpers

TEACHER = NetworkConfig(head="deeplabv3", backbone="resnet10", output_stride=16, head_channels=16, aux_head=True)
PIXEL_KD = {"cross_entropy": {}, "pixel_kd": {"weight": 1.0}}
SSTKD_LIKE = {"cross_entropy": {}, "pixel_kd": {"weight": 1.0}, "adversarial": {"weight": 0.1}, "structural": {"weight": 0.5},
              "statistical": {"weight": 0.5}}


def _student(losses, teacher, **overrides):
    return train_network("student", helpers.tiny_cache(), helpers.INFO, helpers.STATS, helpers.STUDENT, losses,
                         helpers.config(epochs=2, **overrides), teacher_payload=teacher)


def _teacher():
    payload, _ = train_network("teacher", helpers.tiny_cache(), helpers.INFO, helpers.STATS, TEACHER,
                               {"cross_entropy": {}}, helpers.config(epochs=1))
    return payload


def _same_weights(first, second):
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_students_trained_with_the_cache_end_weight_for_weight_as_without_and_share_it(tmp_path):
    teacher = _teacher()
    cache = tmp_path / "teacher-outputs"
    plain, _ = _student(PIXEL_KD, teacher)
    cached, cached_result = _student(PIXEL_KD, teacher, teacher_cache_root=str(cache))
    _same_weights(plain["state_dict"], cached["state_dict"])
    assert [h["loss"] for h in cached_result.history] == [h["loss"] for h in _student(PIXEL_KD, teacher)[1].history]
    assert plain["fingerprint"] == cached["fingerprint"]  # the cache is how it runs, not what it makes
    written = sorted(cache.glob("*/*.pt"))
    assert len(written) == 2 * 2  # 2 epochs × 2 steps (16 crops, batches of 8): one file per batch
    # another method of the same seed: the same batches, every teacher output from the cache, same weights
    other_plain, _ = _student(SSTKD_LIKE, teacher)
    other_cached, _ = _student(SSTKD_LIKE, teacher, teacher_cache_root=str(cache))
    _same_weights(other_plain["state_dict"], other_cached["state_dict"])
    assert sorted(cache.glob("*/*.pt")) == written  # nothing new computed
    # another seed: other batches, other files
    _student(PIXEL_KD, teacher, teacher_cache_root=str(cache), seed=1)
    assert len(list(cache.glob("*/*.pt"))) == 2 * len(written)


def test_a_batch_one_bit_away_misses_and_the_folder_stays_under_its_bound(tmp_path):
    torch.manual_seed(0)
    teacher = build_network(TEACHER, 4).eval()
    images = torch.rand(2, 3, 32, 32)
    cache = TeacherOutputCache(tmp_path, "teacher-fingerprint", "cpu|fp32", max_bytes=1 << 30)
    first = cache.outputs(teacher, images)
    again = cache.outputs(teacher, images.clone())
    assert (cache.hits, cache.misses) == (1, 1)
    for field, value in first._asdict().items():
        assert (value is None and getattr(again, field) is None) or torch.equal(value, getattr(again, field))
    nudged = images.clone()
    nudged[0, 0, 0, 0] = torch.nextafter(nudged[0, 0, 0, 0], torch.tensor(2.0))
    cache.outputs(teacher, nudged)
    assert cache.misses == 2
    other_numerics = TeacherOutputCache(tmp_path, "teacher-fingerprint", "cpu|bf16", max_bytes=1 << 30)
    other_numerics.outputs(teacher, images)
    assert other_numerics.misses == 1  # computed under other numerics: not the same outputs
    one_file = next(tmp_path.glob("*/*.pt")).stat().st_size
    small = TeacherOutputCache(tmp_path, "teacher-fingerprint", "cpu|fp32", max_bytes=2 * one_file)
    small.evict()
    assert len(list(tmp_path.glob("*/*.pt"))) == 2


def test_a_bound_smaller_than_one_students_batches_is_named_at_the_first_write(tmp_path, caplog):
    """LRU against a student's cyclic pass: with room for fewer batches than one student feeds the teacher, the next
    student of the seed finds none of them, and the cache warns with the size that would hold them."""
    torch.manual_seed(0)
    teacher = build_network(TEACHER, 4).eval()
    images = torch.rand(2, 3, 32, 32)
    TeacherOutputCache(tmp_path / "probe", "teacher-fingerprint", "cpu|fp32", max_bytes=1 << 30).outputs(teacher, images)
    one_file = next((tmp_path / "probe").glob("*/*.pt")).stat().st_size
    for batches, warned in ((4, False), (5, False), (6, True)):
        caplog.clear()
        cache = TeacherOutputCache(tmp_path / str(batches), "teacher-fingerprint", "cpu|fp32", max_bytes=5 * one_file,
                                   batches_per_student=batches)
        cache.outputs(teacher, images)
        cache.outputs(teacher, images + 1)  # a second write: the warning is given once
        messages = [r.getMessage() for r in caplog.records if r.name == "sstkd.training.teacher_cache"]
        assert len(messages) == warned, messages
        if warned:
            assert f"one student's {batches} batches" in messages[0] and "raise training.teacher_cache_gb to 1" in messages[0]


def test_a_students_run_counts_its_batches_for_the_bound(tmp_path, caplog):
    """Through train_network, as a distillation node runs it: 2 epochs x 2 batches of 8 (16 crops)."""
    _student(PIXEL_KD, _teacher(), teacher_cache_root=str(tmp_path), teacher_cache_gb=1e-6)
    [message] = [r.getMessage() for r in caplog.records if r.name == "sstkd.training.teacher_cache"]
    assert "one student's 4 batches" in message


def test_logits_derived_from_the_stored_head_feature_are_the_teachers_bits_under_bf16_and_channels_last(tmp_path):
    """The file holds the small head feature, not the full-size logits; a hit derives them again inside the step's
    autocast, as the teacher's forward did, and must return the very same tensor."""
    torch.manual_seed(0)
    teacher = build_network(TEACHER, 4).eval().to(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 40, 56).contiguous(memory_format=torch.channels_last)
    cache = TeacherOutputCache(tmp_path, "teacher-fingerprint", "cpu|bf16", max_bytes=1 << 30)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        computed = cache.outputs(teacher, images)
        restored = cache.outputs(teacher, images)
    assert (cache.hits, cache.misses) == (1, 1) and computed.logits.dtype == torch.bfloat16
    assert computed.logits.shape[-2:] == (40, 56)
    for field, value in computed._asdict().items():
        again = getattr(restored, field)
        assert (value is None and again is None) or (torch.equal(value, again) and value.dtype == again.dtype), field
    stored = torch.load(next(tmp_path.glob("*/*.pt")), weights_only=True)
    assert "logits" not in stored["outputs"] and stored["logits_from_head"]
