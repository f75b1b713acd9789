"""From cached arrays and configuration to a trained model payload: the one recipe every stage uses."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from sstkd.data.dataset import SegmentationArrays
from sstkd.data.transforms import TransformConfig
from sstkd.distill.losses import build_criterion
from sstkd.errors import ModelMismatchError
from sstkd.models.segmenter import NetworkConfig, SegmentationNetwork, build_network
from sstkd.training.checkpoint import check_architecture
from sstkd.training.loop import TrainingConfig, TrainingResult, train_segmenter
from sstkd.training.seeding import seed_everything
from sstkd.training.teacher_cache import TeacherOutputCache


def fingerprint_of(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Training keys that decide where and how a run executes, not what it produces: outside the fingerprint.
RUN_ONLY_TRAINING_KEYS = ("progress", "log_every", "num_workers", "nproc", "rdzv_endpoint", "nnodes", "checkpoint_root",
                          "teacher_cache_root", "teacher_cache_gb", "concurrent_students")


# Training keys added after studies existed, left out of the fingerprint at their default value: a model trained
# before they existed (which trained as the default does) stays up to date.
LATER_TRAINING_KEYS = {"cpu_bf16": False, "validate_every": 1, "scale_step": None, "warmup_epochs": 0.0}


def training_fingerprint(name: str, network_config: NetworkConfig, losses: dict, training: TrainingConfig,
                         dataset_info: dict, teacher_payload: dict | None = None, cache: dict | None = None) -> str:
    """A hash of everything that decides what training ``name`` produces (not where or how verbosely it runs).

    The cache's image size counts where the cache resized the images (the same data at 128x128 and at its own sizes
    trains other models); a cache of the images as they are adds nothing, so those models keep their fingerprint.
    """
    decisive = training.model_dump(exclude=set(RUN_ONLY_TRAINING_KEYS))
    decisive = {k: v for k, v in decisive.items() if k not in LATER_TRAINING_KEYS or v != LATER_TRAINING_KEYS[k]}
    resized_to = getattr(cache, "resized_to", None)
    return fingerprint_of(name, network_config.identity(), losses, decisive, dataset_info.get("fingerprint"),
                          teacher_payload.get("fingerprint") if teacher_payload else None,
                          *([{"cache_resized_to": list(resized_to)}] if resized_to else []))


def transform_config(training: TrainingConfig, statistics: dict) -> TransformConfig:
    return TransformConfig(crop_size=tuple(training.crop_size), scale_range=tuple(training.scale_range),
                           scale_step=training.scale_step,
                           hflip=training.hflip, mean=tuple(statistics["mean"]), std=tuple(statistics["std"]))


def split_dataset(cache: dict, split: str, transforms: TransformConfig, train: bool, seed: int) -> SegmentationArrays:
    if split not in cache:
        raise KeyError(f"the cache has no '{split}' split (it has {sorted(cache)}); check data.required_splits")
    return SegmentationArrays(cache[split]["images"], cache[split]["masks"], transforms, train=train, seed=seed)


def network_from_payload(payload: dict, expected: NetworkConfig | None = None, num_classes: int | None = None,
                         source: str = "checkpoint") -> SegmentationNetwork:
    """Rebuild a trained network from a payload; fail clearly if it does not match what is expected."""
    if expected is not None:
        check_architecture(payload, expected.model_dump(), num_classes, source)
    elif "network" not in payload or "state_dict" not in payload:
        raise ValueError(f"{source}: not an sstkd model checkpoint")
    network = build_network(payload["network"] | {"backbone_weights": None}, payload["num_classes"])
    network.load_state_dict(payload["state_dict"])
    return network


def check_model_matches_data(payload: dict, dataset_info: dict, source: str) -> None:
    """Refuse a model trained for other classes or on other data than ``dataset_info`` describes.

    The class list must be the same; so must the data fingerprint where the model records one (a model
    loaded from ``teacher.checkpoint`` records the data it was validated on).
    """
    classes = list(dataset_info["classes"])
    if payload.get("source_file"):
        source = f"{source} ({payload['source_file']})"
    problems = []
    if payload.get("num_classes") != len(classes):
        problems.append(f"it predicts {payload.get('num_classes')} classes, the data has {len(classes)}")
    elif payload.get("class_names") not in (None, classes):
        differ = [f"{a!r}≠{b!r}" for a, b in zip(payload["class_names"], classes) if a != b][:3]
        problems.append(f"its class names differ from the data's ({', '.join(differ)})")
    recorded = payload.get("data_fingerprint")
    if recorded and recorded != dataset_info.get("fingerprint"):
        problems.append(f"it was trained on data {recorded[:12]} ({payload.get('data_layout', '?')}), the current data "
                        f"is {str(dataset_info.get('fingerprint'))[:12]} ({dataset_info.get('layout')})")
    if problems:
        raise ModelMismatchError(f"{source} does not belong to this dataset: " + "; ".join(problems) + ". Retrain it on this "
                         "data (e.g. `kedro run --pipelines teacher`) or point teacher.checkpoint at a model of this data.")


def check_same_input_space(teacher_payload: dict, statistics: dict) -> None:
    """Refuse a teacher whose inputs were standardised with other statistics than the student's: both networks are
    fed the same tensor, so the teacher would see other pixels than those it was trained on (a converted teacher
    records this study's statistics and maps them to its own input space with its input adapter)."""
    recorded = teacher_payload.get("normalization")
    if not recorded:
        return
    ours = {"mean": list(statistics["mean"]), "std": list(statistics["std"])}
    if any(not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) for key in ("mean", "std")
           for a, b in zip(recorded[key], ours[key], strict=True)):
        raise ValueError(f"teacher_model standardises its input with {recorded}, the student's input is standardised "
                         f"with {ours}: the teacher would see other pixels than the student. Retrain the teacher on "
                         "this data (`kedro run --pipelines teacher`).")


def train_network(
    name: str,
    cache: dict,
    dataset_info: dict,
    statistics: dict,
    network_config: NetworkConfig,
    losses: dict,
    training: TrainingConfig,
    teacher_payload: dict | None = None,
    checkpoint_root: str | Path | None = None,
    callbacks: Sequence[Callable[[int, dict], None]] = (),
    probes: Sequence[Callable] = (),
) -> tuple[dict, TrainingResult]:
    """Train one network (teacher or student) and return ``(payload, result)``.

    The payload carries everything needed to rebuild and audit the model: its architecture, class names,
    input normalisation, the fingerprint of the run that made it, and its best validation mIoU.
    """
    if training.hflip and dataset_info.get("hflip_safe") is False:
        raise ValueError(f"{name}: training.hflip is on, but this dataset's classes change under a horizontal mirror "
                         f"(its classes.json says hflip_safe: false); set training.hflip: false")
    seed_everything(training.seed)
    num_classes = int(dataset_info["num_classes"])
    transforms = transform_config(training, statistics)
    train_set = split_dataset(cache, "train", transforms, train=True, seed=training.seed)
    val_set = split_dataset(cache, "val", transforms, train=False, seed=training.seed)
    student = build_network(network_config, num_classes)
    teacher = None
    if teacher_payload:
        check_model_matches_data(teacher_payload, dataset_info, "teacher_model")
        check_same_input_space(teacher_payload, statistics)
        teacher = network_from_payload(teacher_payload, source="teacher_model")
    criterion = build_criterion(
        losses, num_classes, student.low_level_channels,
        teacher.low_level_channels if teacher is not None else None, where=f"{name}.losses",
        student_head_channels=student.head_channels,
        teacher_head_channels=teacher.head_channels if teacher is not None else None)
    fingerprint = training_fingerprint(name, network_config, losses, training, dataset_info, teacher_payload, cache)
    teacher_cache = None
    if teacher is not None and criterion.needs_teacher and training.teacher_cache_root:
        # everything besides the input that decides the teacher's float outputs
        numerics = (f"{training.device}|bf16={training.bf16}|cpu_bf16={training.cpu_bf16}|"
                    f"channels_last={training.channels_last}|threads={torch.get_num_threads()}|torch={torch.__version__}")
        teacher_cache = TeacherOutputCache(training.teacher_cache_root, teacher_payload["fingerprint"], numerics,
                                           int(training.teacher_cache_gb * 2**30))
    result = train_segmenter(
        student, criterion, train_set, val_set, num_classes, training, teacher=teacher,
        checkpoint_dir=Path(checkpoint_root) / name if checkpoint_root else None,
        fingerprint=fingerprint, name=name, callbacks=callbacks, probes=probes, teacher_cache=teacher_cache)
    payload = {
        "name": name,
        "network": network_config.model_dump(),
        "num_classes": num_classes,
        "class_names": list(dataset_info["classes"]),
        "data_fingerprint": dataset_info.get("fingerprint"),
        "data_layout": dataset_info.get("layout"),
        "state_dict": result.state_dict,
        "normalization": {"mean": list(statistics["mean"]), "std": list(statistics["std"])},
        "fingerprint": fingerprint,
        "best_epoch": result.best_epoch,
        "best_val_miou": float(result.best_miou),
        # convergence, in the report; None for epochs training.validate_every skipped
        "val_miou_curve": [None if record.get("val_miou") is None else float(record["val_miou"])
                           for record in result.history],
        "losses": json.dumps(losses, sort_keys=True),
    }
    return payload, result

