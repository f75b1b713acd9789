import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sstkd.training.checkpoint import atomic_save, check_architecture, load_checkpoint
from sstkd.training.loop import NonFiniteLossError, TrainingConfig

from . import helpers

HELPER = Path(helpers.__file__)


def test_same_seed_same_metrics_and_training_learns():
    first_payload, first = helpers.train(epochs=6, lr=0.05, batch_size=4)
    second_payload, second = helpers.train(epochs=6, lr=0.05, batch_size=4)
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]
    for key, value in first_payload["state_dict"].items():
        torch.testing.assert_close(value, second_payload["state_dict"][key])
    losses = [h["loss"] for h in first.history]
    assert losses[-1] < 0.9 * losses[0], losses
    assert first.best_miou == max(h["val_miou"] for h in first.history)


def _run_child(checkpoint_root, epochs, warmup_epochs, kill_after_checkpoint=False):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HELPER.parents[2]), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "tests.training.helpers", str(checkpoint_root), str(epochs), str(warmup_epochs)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=HELPER.parents[2])
    if kill_after_checkpoint:
        last = Path(checkpoint_root) / "student" / "last.pt"
        deadline = time.time() + 120
        while not last.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert last.exists(), process.communicate()[1][-2000:]
        process.send_signal(signal.SIGKILL)  # mid-training: after epoch 1's checkpoint, during epoch 2
        process.wait()
        return None
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.split("HISTORY=")[1])


def test_a_killed_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path):
    # killed in the middle of a 2-epoch warm-up: the resumed schedule must continue the ramp, not restart it
    uninterrupted = _run_child(tmp_path / "straight", 3, 2)
    _run_child(tmp_path / "killed", 3, 2, kill_after_checkpoint=True)
    state = load_checkpoint(tmp_path / "killed" / "student" / "last.pt")
    assert state["epoch"] < 2  # really interrupted before the end, and before the warm-up's end
    resumed = _run_child(tmp_path / "killed", 3, 2)
    assert resumed == uninterrupted  # each epoch's validation mIoU and learning rate
    assert not list((tmp_path / "killed" / "student").glob(".*tmp"))


def test_a_non_finite_loss_stops_with_the_term_and_step_and_keeps_the_last_checkpoint(tmp_path):
    helpers.train(checkpoint_root=tmp_path, epochs=1)
    good = load_checkpoint(tmp_path / "student" / "last.pt")
    with pytest.raises(NonFiniteLossError, match=r"loss term 'cross_entropy' became non-finite at step \d+") as error:
        helpers.train(checkpoint_root=tmp_path, epochs=2, lr=1e30)
    kept = load_checkpoint(tmp_path / "student" / "last.pt")
    assert kept["fingerprint"] == good["fingerprint"] and kept["epoch"] == good["epoch"]
    # lr=1e30 is another configuration: its last.pt is not "the last good checkpoint" of this run
    message = str(error.value)
    assert "No checkpoint of this configuration exists" in message
    assert "belongs to another configuration and was not resumed" in message and "last good" not in message


def test_a_non_finite_loss_without_any_checkpoint_says_so(tmp_path):
    with pytest.raises(NonFiniteLossError) as error:
        helpers.train(checkpoint_root=tmp_path, epochs=1, lr=1e30)
    message = str(error.value)
    assert "No checkpoint of this configuration exists" in message and "another configuration" not in message


def test_a_non_finite_loss_names_this_configurations_checkpoint_and_its_epoch(tmp_path, monkeypatch):
    original = torch.nn.functional.cross_entropy

    def poison_after_first_epoch(epoch, record):  # same configuration, the loss goes NaN in epoch 2
        monkeypatch.setattr(torch.nn.functional, "cross_entropy", lambda *a, **k: original(*a, **k) * math.nan)

    with pytest.raises(NonFiniteLossError) as error:
        helpers.train(checkpoint_root=tmp_path, epochs=2, callbacks=[poison_after_first_epoch])
    last = tmp_path / "student" / "last.pt"
    assert f"The last good checkpoint of this configuration is {last} (after epoch 1)" in str(error.value)


def test_a_crop_with_only_ignored_pixels_trains_without_a_non_finite_loss():
    cache = helpers.tiny_cache()
    cache["train"]["masks"][:] = 255  # ADE20K-like: every pixel is "other"
    _, result = helpers.train(cache=cache, epochs=1)
    assert result.history[0]["loss"] == 0.0


def test_checkpoints_load_weights_only_and_refuse_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo unsafe",))

    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable sstkd checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    atomic_save({"network": {"head": "pspnet"}, "num_classes": 3, "state_dict": {}}, tmp_path / "ok.pt")
    assert load_checkpoint(tmp_path / "ok.pt")["num_classes"] == 3
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_checkpoint_of_another_architecture_fails_clearly():
    payload = {"network": {"head": "pspnet", "backbone": "resnet10"}, "num_classes": 10, "state_dict": {}}
    with pytest.raises(ValueError, match=r"another architecture \(backbone: checkpoint 'resnet10' vs config 'resnet101'"):
        check_architecture(payload, {"head": "pspnet", "backbone": "resnet101"}, 10, "teacher.checkpoint")
    with pytest.raises(ValueError, match="num_classes: checkpoint 10 vs data 19"):
        check_architecture(payload, {"head": "pspnet", "backbone": "resnet10"}, 19, "teacher.checkpoint")


def test_too_few_samples_for_a_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than one batch"):
        helpers.train(batch_size=64, epochs=1)


def test_a_teacher_of_another_dataset_is_refused_before_training(tmp_path):
    from sstkd.training.recipe import train_network

    teacher, _ = helpers.train(epochs=1)
    assert teacher["data_fingerprint"] == "tiny" and teacher["class_names"] == helpers.INFO["classes"]
    other = {"num_classes": 19, "classes": [f"c{i}" for i in range(19)], "fingerprint": "cityscapes", "layout": "x"}
    losses = {"cross_entropy": {}, "pixel_kd": {}}
    with pytest.raises(ValueError, match=r"teacher_model does not belong to this dataset: it predicts 10 classes, "
                                         r"the data has 19"):
        train_network("student", helpers.tiny_cache(), other, helpers.STATS, helpers.STUDENT, losses,
                      helpers.config(epochs=1), teacher_payload=teacher, checkpoint_root=tmp_path)
    same_classes_other_data = helpers.INFO | {"fingerprint": "newer", "layout": "generic"}
    with pytest.raises(ValueError, match=r"trained on data tiny \(None\), the current data is newer \(generic\)"):
        train_network("student", helpers.tiny_cache(), same_classes_other_data, helpers.STATS, helpers.STUDENT,
                      losses, helpers.config(epochs=1), teacher_payload=teacher, checkpoint_root=tmp_path)
    assert not (tmp_path / "student").exists()  # refused before any training step or checkpoint


def test_validating_every_second_epoch_trains_the_same_weights_and_keeps_the_best_validated_epoch():
    every, every_result = helpers.train(epochs=5, lr=0.05, batch_size=4)
    second, second_result = helpers.train(epochs=5, lr=0.05, batch_size=4, validate_every=2)
    assert [h["loss"] for h in every_result.history] == [h["loss"] for h in second_result.history]  # same training
    validated = [h["epoch"] for h in second_result.history if "val_miou" in h]
    assert validated == [2, 4, 5]  # every second epoch, and always the last
    same = {h["epoch"]: h["val_miou"] for h in every_result.history}
    assert all(h["val_miou"] == same[h["epoch"]] for h in second_result.history if "val_miou" in h)
    best = max(validated, key=lambda epoch: same[epoch])
    assert second_result.best_epoch == best and second_result.best_miou == same[best]
    assert second["val_miou_curve"] == [None if e not in validated else same[e] for e in range(1, 6)]
    assert every["fingerprint"] != second["fingerprint"]  # it selects another model: another fingerprint
    default, _ = helpers.train(epochs=5, lr=0.05, batch_size=4, validate_every=1)
    assert default["fingerprint"] == every["fingerprint"]  # a key at its default leaves older fingerprints alone


def test_a_warm_up_ramps_the_first_epochs_learning_rate_then_the_poly_schedule_is_unchanged():
    # 16 training crops at batch 4: 4 steps an epoch, a warm-up of 2 epochs is 8 steps
    plain, plain_result = helpers.train(epochs=4, lr=0.05, batch_size=4)
    warm, warm_result = helpers.train(epochs=4, lr=0.05, batch_size=4, warmup_epochs=2)
    plain_lr, warm_lr = [h["lr"] for h in plain_result.history], [h["lr"] for h in warm_result.history]
    assert warm_lr[0] == pytest.approx(plain_lr[0] * 5 / 8)  # after 4 of 8 warm-up steps: the factor (4 + 1) / 8
    assert warm_lr[1:] == pytest.approx(plain_lr[1:])  # warmed up: the same poly decay
    assert warm_result.history[0]["loss"] != plain_result.history[0]["loss"]  # smaller first steps trained
    assert warm["fingerprint"] != plain["fingerprint"]
    default, _ = helpers.train(epochs=4, lr=0.05, batch_size=4, warmup_epochs=0)
    assert default["fingerprint"] == plain["fingerprint"]  # older models keep their fingerprint


def test_cpu_bf16_autocast_trains_in_bf16_with_channels_last_and_stays_close_to_fp32():
    from sstkd.training.loop import TrainingConfig, _autocast, _channels_last

    cpu = torch.device("cpu")
    fast = TrainingConfig(cpu_bf16=True)
    with _autocast(cpu, fast):
        assert torch.nn.functional.conv2d(torch.rand(1, 3, 8, 8), torch.rand(4, 3, 3, 3)).dtype == torch.bfloat16
    assert _channels_last(cpu, fast) and not _channels_last(cpu, TrainingConfig())
    fp32, fp32_result = helpers.train(epochs=2, lr=0.05, batch_size=4)
    bf16, bf16_result = helpers.train(epochs=2, lr=0.05, batch_size=4, cpu_bf16=True)
    first = [h["loss"] for h in fp32_result.history]
    assert [h["loss"] for h in bf16_result.history] != first  # other numerics...
    assert [h["loss"] for h in bf16_result.history] == pytest.approx(first, rel=0.05)  # ...the same training
    assert bf16["fingerprint"] != fp32["fingerprint"]


def test_bf16_arithmetic_is_read_off_the_cpu_and_its_absence_is_warned_of_in_the_loop(caplog, monkeypatch):
    import platform
    from pathlib import Path

    from sstkd.training import loop

    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() == "x86_64" and cpuinfo.is_file():  # the kernel's flags, against torch's own probe
        flags = set(next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split())
        assert loop.native_cpu_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})
    monkeypatch.setattr(loop, "native_cpu_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="sstkd.training.loop"):
        helpers.train(epochs=1, lr=0.05, batch_size=4, cpu_bf16=True)
    assert "training.cpu_bf16 is on, but this CPU" in caplog.text and "(training.cpu_bf16: false)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="sstkd.training.loop"):
        helpers.train(epochs=1, lr=0.05, batch_size=4)
    assert "cpu_bf16" not in caplog.text


def test_a_worker_process_trains_the_same_weights_as_this_process():
    """The concurrent students' path (sstkd.training.launch): a spawned worker at one thread, against this process
    at one thread."""
    from sstkd.training.launch import train_in_worker_process
    from sstkd.training.recipe import train_network

    kwargs = dict(name="student", cache=helpers.tiny_cache(n_train=8, n_val=4), dataset_info=helpers.INFO,
                  statistics=helpers.STATS, network_config=helpers.STUDENT, losses={"cross_entropy": {}},
                  training=helpers.config(epochs=1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here, _ = train_network(**kwargs)
    finally:
        torch.set_num_threads(threads)
    there, result = train_in_worker_process(kwargs, processes=1, threads=1)
    assert all(torch.equal(there["state_dict"][k], v) for k, v in here["state_dict"].items())
    assert result.history[0]["val_miou"] == there["best_val_miou"]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_optimizer_steps_per_epoch_counts_what_the_loader_yields_on_every_rank(world, monkeypatch):
    """The schedule (and a cost estimate) is built on this count; one step too many ends an epoch in StopIteration,
    one too few leaves data unseen and shifts the poly decay."""
    from torch.utils.data import DataLoader, DistributedSampler

    from sstkd.training import loop

    monkeypatch.setattr(loop.dist_utils, "world_size", lambda: world)
    for samples in (37, 64, 100):
        for batch_size, accumulate, cap in ((4, 1, None), (16, 1, None), (16, 2, None), (12, 3, None), (4, 1, 2)):
            config = TrainingConfig(batch_size=batch_size, accumulate_steps=accumulate, max_steps_per_epoch=cap)
            data = list(range(samples))
            sampler = DistributedSampler(data, num_replicas=world, rank=world - 1, shuffle=True, drop_last=True)
            micro_batches = len(DataLoader(data, batch_size=loop._per_rank_batch(config), sampler=sampler,
                                           drop_last=True))
            expected = micro_batches // accumulate
            expected = min(expected, cap) if cap else expected
            assert loop.optimizer_steps_per_epoch(samples, config) == expected, (samples, config)
            if world == 1:  # and the loop's own loader
                loader, _ = loop._train_loader(data, config, seed=0)
                steps = len(loader) // accumulate
                assert (min(steps, cap) if cap else steps) == loop.optimizer_steps_per_epoch(samples, config)
