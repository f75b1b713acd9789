"""The one training loop: teacher, baseline student and every distillation method call :func:`train_segmenter`.

* SGD + momentum with poly decay (the paper's recipe) or AdamW; gradient accumulation.
* CUDA: bf16 autocast and channels_last; CPU: fp32, deterministic (bf16 autocast with ``cpu_bf16``, on a CPU
  with bf16 arithmetic: elsewhere it is emulated, and ``kedro run`` refuses it).
* The teacher is frozen (eval mode, no grad); the student, the loss adapters and (with its own optimiser) the
  adversarial critic learn.
* Every epoch a checkpoint (model, optimisers, scheduler, critic, epoch, RNG states, history) is written
  atomically; an interrupted run started again resumes from it and ends with the same result, because all
  randomness of epoch ``e`` derives from ``(seed, e)``.
* A non-finite loss stops the run with an error naming the term and the step, and this configuration's last good
  checkpoint (with its epoch) if there is one; a ``last.pt`` of another configuration is said to be one.
* Under ``torch.distributed`` (torchrun / elastic launch) it is data-parallel: DistributedSampler, DDP, optional
  SyncBatchNorm; rank 0 alone logs, checkpoints and calls the callbacks.
"""

from __future__ import annotations

import copy
import logging
import math
import platform
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from sstkd.data.ragged import same_size_batches
from sstkd.distill.losses import DistillationCriterion
from sstkd.errors import UserError
from sstkd.evaluation.inference import predict_logits
from sstkd.evaluation.metrics import ConfusionMatrix
from sstkd.training import distributed as dist_utils
from sstkd.training.checkpoint import atomic_save, load_checkpoint
from sstkd.training.seeding import epoch_seed
from sstkd.training.teacher_cache import TeacherOutputCache

log = logging.getLogger(__name__)

# A training checkpoint (last.pt) holds no result: a broken one costs only the epochs it recorded.
RESTART_FIX = "delete it and run again: training then starts from the first epoch"


class TrainingConfig(BaseModel):
    """Training hyper-parameters (``training:`` in ``conf/*/parameters_*.yml``)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(8, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    poly_power: float = Field(0.9, ge=0)
    # A linear warm-up over the first epochs' steps into the poly schedule: a guard for the large learning rates
    # of issue 19's lr screen (0.32-0.64 on pretrained backbones), whose first full-size steps hit fresh heads.
    warmup_epochs: float = Field(0.0, ge=0)
    accumulate_steps: int = Field(1, ge=1)
    crop_size: tuple[int, int] = (96, 96)
    scale_range: tuple[float, float] = (0.75, 1.5)
    scale_step: float | None = Field(None, gt=0)  # a scale of lo, lo + step, ..., hi (CIRKD's, SKD's loaders: 0.1)
    hflip: bool = True
    num_workers: int = Field(0, ge=0)
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    channels_last: bool = True
    # CPU: bf16 autocast with channels_last (the texture losses stay fp32): ~1.6x a student step on an AVX512-BF16
    # CPU, numerics as on a GPU. Off by default; a protocol that turns it on does so for every method.
    cpu_bf16: bool = False
    # Validate (and so choose the best model) after every n-th epoch and always after the last one; the epochs in
    # between record no validation numbers. Best-model selection means the same: the best validated epoch.
    validate_every: int = Field(1, ge=1)
    compile: bool = False
    sync_batchnorm: bool = False
    log_every: int = Field(10, ge=1)
    max_steps_per_epoch: int | None = Field(None, ge=1)
    progress: bool = True
    nproc: int = Field(1, ge=1)
    # Students side by side under a thread runner (`--runner sstkd.runner.StudentThreadRunner`): at most this many at
    # once (null: one per CPU core), each in its own worker process with (this process's threads / this) threads.
    concurrent_students: int | None = Field(None, ge=1)
    rdzv_endpoint: str | None = None
    nnodes: str = "1"
    checkpoint_root: str | None = "data/06_models/checkpoints"  # resumable per-epoch state, one folder per model
    # Teacher outputs shared by the students that feed the teacher the same batches (the methods of one seed):
    # a folder (sstkd.training.teacher_cache), kept under teacher_cache_gb. Exact, so it changes no result.
    teacher_cache_root: str | None = None
    teacher_cache_gb: float = Field(8.0, gt=0)

    @model_validator(mode="after")
    def _warmup_within_the_schedule(self) -> TrainingConfig:
        check_warmup(self.epochs, self.warmup_epochs)
        return self

    @model_validator(mode="after")
    def _scale_step_divides_the_range(self) -> TrainingConfig:
        low, high = self.scale_range
        if high < low:
            raise ValueError(f"scale_range {list(self.scale_range)}: the low end comes first")
        if self.scale_step is not None:
            steps = (high - low) / self.scale_step
            if abs(steps - round(steps)) > 1e-6:
                raise ValueError(f"scale_step {self.scale_step} does not divide scale_range {list(self.scale_range)} "
                                 "into whole steps (the largest scale would fall outside the range)")
        return self


class NonFiniteLossError(UserError, FloatingPointError):
    pass


@dataclass
class TrainingResult:
    state_dict: dict[str, torch.Tensor]  # best validation mIoU, on CPU
    best_epoch: int
    best_miou: float
    history: list[dict] = field(default_factory=list)
    resumed_from_epoch: int | None = None


class _StudentStep(nn.Module):
    """Student forward + criterion in one module, so DDP also synchronises the loss adapters' gradients."""

    def __init__(self, student: nn.Module, criterion: DistillationCriterion):
        super().__init__()
        self.student, self.criterion = student, criterion

    def forward(self, images, masks, teacher_output):
        output = self.student(images)
        total, values = self.criterion(output, teacher_output, {"images": images, "masks": masks})
        return total, values, output


def poly_decay(total_steps: int, power: float, warmup_steps: int = 0) -> Callable[[int], float]:
    """The paper's learning-rate factor at a step: (1 − step / total)^power, for ``LambdaLR``; with
    ``warmup_steps``, rising linearly to it over the first steps (large-batch ResNet training's warm-up)."""
    def factor(step: int) -> float:
        decay = max(0.0, 1 - step / max(total_steps, 1)) ** power
        return decay * min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else decay
    return factor


def check_warmup(epochs: int, warmup_epochs: float) -> None:
    """A warm-up longer than the schedule never reaches ``lr`` (a shortened ``epochs`` that kept the recipe's
    warm-up): refused at the start, not found in the learning curves afterwards."""
    if warmup_epochs > epochs:
        raise ValueError(f"warmup_epochs {warmup_epochs:g} is longer than epochs {epochs}: the learning rate would "
                         "never reach lr; shorten warmup_epochs with epochs")


def poly_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int, power: float,
                   warmup_epochs: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """``poly_decay`` over ``epochs`` of ``steps_per_epoch`` optimiser steps, warmed up over ``warmup_epochs``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, poly_decay(steps_per_epoch * epochs, power,
                                                                   round(steps_per_epoch * warmup_epochs)))


def _per_rank_batch(config: TrainingConfig) -> int:
    return max(1, config.batch_size // (dist_utils.world_size() * config.accumulate_steps))


def optimizer_steps_per_epoch(train_samples: int, config: TrainingConfig) -> int:
    """The optimiser steps of one epoch over ``train_samples``: each rank's full micro-batches (the loader and the
    distributed sampler drop what is left over), ``accumulate_steps`` to a step, at most ``max_steps_per_epoch``.
    What the loop's schedule is built on, and what a cost estimate must count."""
    micro_batches = train_samples // dist_utils.world_size() // _per_rank_batch(config)
    steps = micro_batches // config.accumulate_steps
    return min(steps, config.max_steps_per_epoch) if config.max_steps_per_epoch else steps


def _train_loader(dataset: Dataset, config: TrainingConfig, seed: int) -> tuple[DataLoader, object]:
    sampler = None
    generator = torch.Generator().manual_seed(seed)
    if dist_utils.is_distributed():
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
    loader = DataLoader(
        dataset,
        batch_size=_per_rank_batch(config),
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=True,
        num_workers=config.num_workers,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
        persistent_workers=False,
    )
    return loader, sampler


@torch.no_grad()
def validate(model: nn.Module, dataset: Dataset, num_classes: int, config: TrainingConfig,
             device: torch.device, window: tuple[int, int] | None = None) -> dict:
    """mIoU and accuracies of ``model`` on ``dataset`` (confusion matrix summed over ranks).

    Every image is seen once, at its own size: batches of one size (:func:`same_size_batches`), dealt out to the
    ranks in turn (``model`` is the bare network, so ranks may run different numbers of batches).
    """
    sizes = getattr(dataset, "sizes", None)
    if sizes is None:
        sizes = np.zeros((len(dataset), 2), dtype=np.int64)
    batches = same_size_batches(sizes, _per_rank_batch(config))[dist_utils.rank()::dist_utils.world_size()]
    loader = DataLoader(dataset, batch_sampler=[batch.tolist() for batch in batches], num_workers=config.num_workers,
                        pin_memory=torch.cuda.is_available())
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(num_classes, device)
    autocast = _autocast(device, config)
    for images, masks in loader:
        images = _to_device(images, device, config)
        with autocast:
            probabilities = predict_logits(model, images, window=window)
        matrix.update(probabilities.argmax(1), masks.to(device))
    dist_utils.all_reduce_sum(matrix.matrix)
    model.train(was_training)
    return matrix.compute()


# Where bf16 autocast on the CPU has no hardware under it, it is emulated: measured on an AVX2 EPYC of this
# project's machines, a pixel-KD step took 12.7 s in bf16 against 1.2 s in fp32, a 3x3 convolution 25x as long
# (benchmarks/results/distillation_step_avx2_fp32_vs_bf16.txt).
CPU_BF16_FIX = "train every model of the study in fp32"


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (x86: AVX512-BF16 or AMX-BF16; Arm: the BF16 extension), read
    from the kernel's CPU flags, else from torch's probes. Where neither tells (another OS or architecture), True:
    only a known emulation is refused."""
    machine = platform.machine().lower()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = {flag for line in cpuinfo.read_text().splitlines() if line.startswith(("flags", "Features"))
                 for flag in line.split(":", 1)[-1].split()}
        if machine in ("x86_64", "amd64") and flags:
            return bool(flags & {"avx512_bf16", "amx_bf16"})
        if machine in ("aarch64", "arm64") and flags:
            return "bf16" in flags
    if machine in ("x86_64", "amd64"):
        probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(probe() for probe in probes if probe) if any(probes) else True
    return True


def _autocast(device: torch.device, config: TrainingConfig):
    if device.type == "cuda" and config.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and config.cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def _channels_last(device: torch.device, config: TrainingConfig) -> bool:
    return config.channels_last and (device.type == "cuda" or config.cpu_bf16)


def _to_device(images: torch.Tensor, device: torch.device, config: TrainingConfig) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if _channels_last(device, config):
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _checkpoint_note(last_path: Path | None, fingerprint: str, foreign: bool) -> str:
    """Which checkpoint a user can go back to after a failure: only one written by this configuration counts."""
    if last_path is None:
        return "No checkpoint was kept (no checkpoint_dir)."
    if last_path.exists() and not foreign:
        state = load_checkpoint(last_path, map_location="cpu", fix=RESTART_FIX)
        if state.get("fingerprint") == fingerprint:
            return f"The last good checkpoint of this configuration is {last_path} (after epoch {state['epoch'] + 1})."
    note = f"No checkpoint of this configuration exists in {last_path.parent}"
    if foreign:
        note += f"; {last_path} belongs to another configuration and was not resumed"
    return note + "."


def train_segmenter(
    student: nn.Module,
    criterion: DistillationCriterion,
    train_set: Dataset,
    val_set: Dataset,
    num_classes: int,
    config: TrainingConfig,
    teacher: nn.Module | None = None,
    checkpoint_dir: str | Path | None = None,
    fingerprint: str = "",
    name: str = "model",
    callbacks: Sequence[Callable[[int, dict], None]] = (),
    probes: Sequence[Callable[[nn.Module, DistillationCriterion, nn.Module | None], dict]] = (),
    teacher_cache: TeacherOutputCache | None = None,
) -> TrainingResult:
    """Train ``student`` with ``criterion`` (and ``teacher`` when the criterion needs one).

    ``checkpoint_dir`` holds ``last.pt``; a ``last.pt`` with the same ``fingerprint`` (a hash of everything that
    decides the run) is resumed, any other is ignored and replaced. ``callbacks(epoch, metrics)`` run on rank 0
    after each epoch (e.g. MLflow logging). ``probes(student, criterion, teacher)`` run on rank 0 after each epoch's
    validation and before the callbacks; the numbers they return join the epoch's record (diagnostics such as
    :func:`sstkd.training.diagnostics.term_gradient_norms`, which measure on copies and leave the run unchanged).
    ``teacher_cache``: where the teacher's outputs for a batch come from when another student already fed it the
    same batch (exact: the run ends as it would without).
    """
    if criterion.needs_teacher and teacher is None:
        raise ValueError(f"{name}: the loss terms {sorted(criterion.terms)} need a teacher, but none was given")
    if probes and dist_utils.is_distributed():  # a probe's forward on rank 0 alone would hang SyncBatchNorm
        raise ValueError(f"{name}: training probes measure single-process runs only (training.nproc: 1)")
    device = dist_utils.local_device(config.device)
    main = dist_utils.is_main_process()
    memory_format = torch.channels_last if _channels_last(device, config) else torch.preserve_format
    if config.sync_batchnorm and dist_utils.is_distributed():
        student = nn.SyncBatchNorm.convert_sync_batchnorm(student)
        criterion = nn.SyncBatchNorm.convert_sync_batchnorm(criterion)  # e.g. CIRKD's projection (in place)
    student.to(device, memory_format=memory_format).train()
    criterion.to(device)
    if teacher is not None:
        teacher.to(device, memory_format=memory_format).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)

    step_module: nn.Module = _StudentStep(student, criterion)
    adversarial = criterion.adversarial
    if dist_utils.is_distributed():
        ignored = []
        if adversarial is not None:  # the critic is trained apart, its gradients averaged by hand below
            ignored += [f"criterion.terms.adversarial.{n}" for n, _ in adversarial.named_parameters()]
            ignored += [f"criterion.terms.adversarial.{n}" for n, _ in adversarial.named_buffers()]
        for term_name, term in criterion.terms.items():  # each process keeps its own memory (CIRKD's queues)
            ignored += [f"criterion.terms.{term_name}.{n}" for n in getattr(term, "process_local_buffers", ())]
        if ignored:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(step_module, ignored)
        step_module = DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)
    forward_step = torch.compile(step_module) if config.compile else step_module

    parameters = list(student.parameters()) + criterion.student_side_parameters()
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    critic_optimizer = (torch.optim.Adam(adversarial.discriminator.parameters(), lr=adversarial.lr,
                                         betas=(0.9, 0.99)) if adversarial is not None else None)

    train_loader, sampler = _train_loader(train_set, config, seed=config.seed)
    steps_per_epoch = optimizer_steps_per_epoch(len(train_set), config)
    if teacher_cache is not None and main:  # every rank's micro-batches share the folder; one rank says so
        teacher_cache.batches_per_student = (config.epochs * steps_per_epoch * config.accumulate_steps
                                             * dist_utils.world_size())
    if steps_per_epoch < 1:
        raise ValueError(f"{name}: the training split has {len(train_set)} samples, fewer than one batch of "
                         f"{config.batch_size}; lower training.batch_size")
    scheduler = poly_scheduler(optimizer, steps_per_epoch, config.epochs, config.poly_power, config.warmup_epochs)

    history: list[dict] = []
    best_miou, best_epoch, best_state = -math.inf, -1, None
    start_epoch, resumed_from = 0, None
    last_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    foreign_checkpoint = False  # a last.pt of another configuration: neither resumed nor "the last good one"
    if last_path is not None and last_path.exists():
        state = load_checkpoint(last_path, map_location="cpu", fix=RESTART_FIX)
        foreign_checkpoint = state.get("fingerprint") != fingerprint
        if state.get("fingerprint") == fingerprint and state.get("epoch", -1) + 1 <= config.epochs:
            student.load_state_dict(state["model"])
            criterion.load_state_dict(state["criterion"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if critic_optimizer is not None:
                critic_optimizer.load_state_dict(state["critic_optimizer"])
            history, best_miou, best_epoch = state["history"], state["best_miou"], state["best_epoch"]
            best_state = state["best_model"]
            start_epoch = resumed_from = state["epoch"] + 1
            torch.set_rng_state(state["rng"]["torch"])
            if main:
                log.info("%s: resuming from %s after epoch %d", name, last_path, state["epoch"] + 1)
        elif main:
            log.info("%s: ignoring %s (made by a different configuration)", name, last_path)

    first_bad_step = torch.full((len(criterion.terms),), -1, dtype=torch.long, device=device)
    term_names = list(criterion.terms)
    check_every = 1 if device.type == "cpu" else config.log_every
    autocast = _autocast(device, config)
    if device.type == "cpu" and config.cpu_bf16 and main and not native_cpu_bf16():
        log.warning("%s: training.cpu_bf16 is on, but this CPU (%s) has no bf16 arithmetic: autocast is emulated, "
                    "an order of magnitude slower than fp32; %s (training.cpu_bf16: false)", name,
                    torch.backends.cpu.get_cpu_capability(), CPU_BF16_FIX)
    global_step = start_epoch * steps_per_epoch

    for epoch in range(start_epoch, config.epochs):
        seed = epoch_seed(config.seed, epoch)
        torch.manual_seed(seed)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        train_loader.generator.manual_seed(seed)
        student.train()
        running = torch.zeros(len(term_names) + 1, device=device)
        seen = 0
        started = time.perf_counter()
        bar = tqdm(total=steps_per_epoch, desc=f"{name} {epoch + 1}/{config.epochs}", leave=False,
                   disable=None if main and config.progress else True, unit="step")  # None: only on a terminal
        batches = iter(train_loader)
        for step in range(steps_per_epoch):
            for micro in range(config.accumulate_steps):
                images, masks = next(batches)
                images, masks = _to_device(images, device, config), masks.to(device, non_blocking=True)
                sync = (nullcontext() if micro == config.accumulate_steps - 1 or not dist_utils.is_distributed()
                        else step_module.no_sync())
                with sync:
                    with autocast:
                        teacher_output = None
                        if teacher is not None and criterion.needs_teacher:
                            if teacher_cache is not None:
                                teacher_output = teacher_cache.outputs(teacher, images)
                            else:
                                with torch.no_grad():
                                    teacher_output = teacher(images)
                        total, values, student_output = forward_step(images, masks, teacher_output)
                    (total / config.accumulate_steps).backward()
                term_values = torch.stack([values[n].detach().float() for n in term_names])
                finite = torch.isfinite(term_values)
                first_bad_step = torch.where(~finite & (first_bad_step < 0), global_step, first_bad_step)
                running += torch.cat([total.detach().float().view(1), term_values]).nan_to_num(0.0)
                seen += images.shape[0]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if adversarial is not None and teacher_output is not None:
                with autocast:
                    critic_loss = adversarial.discriminator_loss(student_output, teacher_output,
                                                                 {"images": images, "masks": masks})
                critic_optimizer.zero_grad(set_to_none=True)
                critic_loss.backward()
                if dist_utils.is_distributed():
                    for parameter in adversarial.discriminator.parameters():
                        if parameter.grad is not None:
                            dist_utils.all_reduce_sum(parameter.grad).div_(dist_utils.world_size())
                critic_optimizer.step()
            global_step += 1
            if (step + 1) % check_every == 0 or step + 1 == steps_per_epoch:
                bad = first_bad_step.cpu()
                if (bad >= 0).any():
                    term = term_names[int((bad >= 0).nonzero()[0])]
                    raise NonFiniteLossError(
                        f"{name}: loss term '{term}' became non-finite at step {int(bad.max())} (epoch {epoch + 1}); "
                        f"stopped. {_checkpoint_note(last_path, fingerprint, foreign_checkpoint)}")
            if main and config.progress and ((step + 1) % config.log_every == 0 or step + 1 == steps_per_epoch):
                means = (running / max(step + 1, 1) / config.accumulate_steps).tolist()
                rate = seen * dist_utils.world_size() / (time.perf_counter() - started)
                bar.set_postfix({"loss": f"{means[0]:.3f}", **{n: f"{v:.3f}" for n, v in zip(term_names, means[1:])},
                                 "img/s": f"{rate:.0f}"})
                bar.update((step + 1) - bar.n)
        bar.close()
        elapsed = time.perf_counter() - started
        running = dist_utils.all_reduce_sum(running) / dist_utils.world_size()  # log the global mean
        means = (running / steps_per_epoch / config.accumulate_steps).tolist()
        validated = (epoch + 1) % config.validate_every == 0 or epoch + 1 == config.epochs
        val = validate(student, val_set, num_classes, config, device) if validated else None
        record = {"epoch": epoch + 1, "loss": means[0], **{f"loss_{n}": v for n, v in zip(term_names, means[1:])},
                  **({"val_miou": val["miou"], "val_pixel_accuracy": val["pixel_accuracy"]} if val else {}),
                  "lr": optimizer.param_groups[0]["lr"],
                  "images_per_second": seen * dist_utils.world_size() / max(elapsed, 1e-9)}
        if main:
            for probe in probes:
                record |= probe(student, criterion, teacher)
        history.append(record)
        if val is not None and val["miou"] > best_miou:
            best_miou, best_epoch = val["miou"], epoch + 1
            best_state = {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
        if main:
            log.info("%s epoch %d/%d: loss %.4f, %s, %.1f img/s", name, epoch + 1, config.epochs, means[0],
                     f"val mIoU {val['miou']:.4f}" if val else "not validated", record["images_per_second"])
            if last_path is not None:
                foreign_checkpoint = False
                atomic_save({
                    "fingerprint": fingerprint, "epoch": epoch, "model": student.state_dict(),
                    "criterion": criterion.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "critic_optimizer": critic_optimizer.state_dict() if critic_optimizer else None,
                    "history": history, "best_miou": best_miou, "best_epoch": best_epoch,
                    "best_model": best_state, "rng": _rng_state(device),
                }, last_path)
            for callback in callbacks:
                callback(epoch + 1, record)
        dist_utils.barrier()
    if teacher_cache is not None and main:
        log.info("%s: %s", name, teacher_cache.summary())
    return TrainingResult(copy.deepcopy(best_state), best_epoch, best_miou, history, resumed_from)
