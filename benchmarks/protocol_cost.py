"""What the full protocol costs on this machine, measured on its own training loop, against a time budget.

    python benchmarks/protocol_cost.py                                  # conf/protocol at this machine's threads
    OMP_NUM_THREADS=1 python benchmarks/protocol_cost.py --cores 2     # one thread: the tables' thread count
    python benchmarks/protocol_cost.py --family dead_leaves --budget 30

For the teacher and every row of ``distillation.run`` it runs ``train_network`` (what every training node
runs) for one epoch of ``--steps`` and of ``3 × --steps`` steps on images of the env's built-in dataset: the
difference is the cost of the extra steps, the rest the epoch's fixed part (validation over the val split's size;
the per-epoch checkpoint write and MLflow logging of a real run are not timed: a real run takes ~10% longer).
The frozen teacher's forward pass is timed apart, so the table also says what caching the teacher's outputs across
methods could save at most. It projects the study (teacher once, every row once per seed, the env's epochs and
split sizes) three ways: one process at this thread count (what ``kedro run --env protocol`` does); the same with the
teacher's outputs free; and that spread over ``--cores`` single-thread workers (meaningful when measured with one
thread). Evaluation (test predictions, texture-transfer measures, report: a few minutes) is not included. Run it on
a quiet machine: it differences two short timings, so other load lands in the per-step cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from kedro.config import OmegaConfigLoader

from sstkd.config import student_settings, teacher_settings
from sstkd.data.synthetic import MosaicSpec, render_mosaic
from sstkd.models.segmenter import build_network
from sstkd.study import parse_method_list, parse_seeds
from sstkd.training.distributed import local_device
from sstkd.training.loop import _autocast, _to_device, optimizer_steps_per_epoch  # the loop's own rules
from sstkd.training.recipe import train_network


def render(spec: MosaicSpec, count: int, offset: int) -> dict:
    samples = [render_mosaic(spec, offset + index) for index in range(count)]
    return {"images": np.stack([s[0] for s in samples]), "masks": np.stack([s[1] for s in samples])}


def epoch_seconds(name: str, network_config, losses: dict, config, data: dict, teacher_payload: dict | None,
                  steps: int) -> float:
    """Wall time of one epoch of ``steps`` steps plus its validation, through ``train_network`` (what a training
    node calls: data sets, networks, criterion, then the loop)."""
    config = config.model_copy(update={"epochs": 1, "max_steps_per_epoch": steps, "progress": False,
                                       "checkpoint_root": None})
    started = time.perf_counter()
    train_network(name, data["cache"], data["info"], data["statistics"], network_config, losses, config,
                  teacher_payload=teacher_payload)
    return time.perf_counter() - started


def teacher_forward_seconds(teacher_config, config, num_classes: int, repeats: int = 5) -> float:
    """One teacher forward on a micro-batch, on the loop's device, precision and memory format."""
    device = local_device(config.device)
    memory_format = torch.channels_last if device.type == "cuda" and config.channels_last else torch.preserve_format
    teacher = build_network(teacher_config, num_classes).to(device, memory_format=memory_format).eval()
    micro_batch = max(1, config.batch_size // config.accumulate_steps)
    images = _to_device(torch.randn(micro_batch, 3, *config.crop_size), device, config)
    times = []
    with torch.no_grad(), _autocast(device, config):
        for index in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            teacher(images)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if index:
                times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="protocol")
    parser.add_argument("--family", default=None, help="the built-in dataset (default: the env's synthetic.family)")
    parser.add_argument("--steps", type=int, default=3, help="short epoch; the long one has 3x as many steps")
    parser.add_argument("--cores", type=int, default=2, help="single-thread workers of the last projection")
    parser.add_argument("--budget", type=float, default=30.0, help="minutes")
    parser.add_argument("--rows", nargs="+", default=None, help="project these rows only (default: distillation.run)")
    args = parser.parse_args()
    if "OMP_NUM_THREADS" not in os.environ:  # the thread count `kedro run` uses (sstkd.hooks)
        torch.set_num_threads(max(1, os.cpu_count() or 1))

    parameters = OmegaConfigLoader("conf", base_env="base", default_run_env=args.env,
                                   merge_strategy={"parameters": "soft"})["parameters"]
    synthetic = parameters["synthetic"]
    spec = MosaicSpec(**{key: value for key, value in synthetic.items() if key in MosaicSpec.__dataclass_fields__}
                      | {"splits": dict(synthetic["splits"]),
                         "family": args.family or synthetic.get("family", "mosaics")})
    num_classes = len(spec.classes)
    teacher_params, teacher_training = teacher_settings(parameters["training"], parameters["teacher"])
    rows = parse_method_list(args.rows or parameters["distillation"]["run"])
    seeds = parse_seeds(parameters["study"]["seeds"])
    students = {name: student_settings(parameters["training"], parameters["distillation"]["student"],
                                       parameters["distillation"]["methods"][name], name, seeds[0]) for name in rows}
    batch = max([teacher_training.batch_size] + [config.batch_size for _, _, config in students.values()])
    long_steps = 3 * args.steps
    cache = {"train": render(spec, batch * long_steps, 0), "val": render(spec, spec.splits["val"], 100_000)}
    pixels = cache["train"]["images"].reshape(-1, 3) / 255.0
    statistics_ = {"mean": pixels.mean(0).tolist(), "std": pixels.std(0).tolist()}
    teacher_network = teacher_params.network.model_dump() | {"backbone_weights": None}
    data = {"cache": cache, "statistics": statistics_,
            "info": {"num_classes": num_classes, "classes": list(spec.classes), "layout": "protocol_cost"}}
    torch.manual_seed(0)
    teacher_payload = {"network": teacher_network, "num_classes": num_classes,  # untrained: costs the same
                       "state_dict": build_network(teacher_network, num_classes).state_dict()}
    print(f"env {args.env}, {spec.family}, {torch.get_num_threads()} thread(s); rows {len(rows)}, seeds {len(seeds)}; "
          f"train {spec.splits['train']} / val {spec.splits['val']} images")

    def steps_per_epoch(config) -> int:
        return optimizer_steps_per_epoch(spec.splits["train"], config)

    def cost(name, network, losses, config, with_teacher) -> tuple[float, float, float]:
        """(seconds per step, fixed seconds per epoch, seconds for the whole training)."""
        network = network.model_copy(update={"backbone_weights": None})  # no download: random weights cost the same
        short, long = (epoch_seconds(name, network, losses, config, data,
                                     teacher_payload if with_teacher else None, steps)
                       for steps in (args.steps, long_steps))
        step = max((long - short) / (long_steps - args.steps), 0.0)  # a busy machine can invert one pair
        fixed = max(short - args.steps * step, 0.0)
        return step, fixed, config.epochs * (steps_per_epoch(config) * step + fixed)

    cost("warm-up", teacher_params.network, {"cross_entropy": {}}, teacher_training, False)  # discarded
    teacher_step, teacher_fixed, teacher_total = cost("teacher", teacher_params.network, dict(teacher_params.losses),
                                                      teacher_training, False)
    print(f"{'':26s} {'step ms':>8s} {'teacher fwd ms':>15s} {'epoch fixed s':>14s} {'per student s':>14s}")
    print(f"{'teacher':26s} {1000 * teacher_step:8.1f} {'':>15s} {teacher_fixed:14.2f} {teacher_total:14.2f}"
          f"   ({teacher_training.epochs} epochs x {steps_per_epoch(teacher_training)} steps, "
          f"crop {teacher_training.crop_size[0]})")
    total, total_without_teacher = 0.0, 0.0
    for name, (student_params, method_params, config) in students.items():
        losses = {term: dict(options or {}) for term, options in method_params.losses.items()}
        with_teacher = any(term != "cross_entropy" for term in losses)
        step, fixed, seconds = cost(name, student_params.network, losses, config, with_teacher)
        forward = teacher_forward_seconds(teacher_network, config, num_classes) if with_teacher else 0.0
        steps = config.epochs * steps_per_epoch(config) * config.accumulate_steps  # teacher forwards
        total += len(seeds) * seconds
        total_without_teacher += len(seeds) * max(seconds - steps * forward, 0.0)
        print(f"{name:26s} {1000 * step:8.1f} {1000 * forward:15.1f} {fixed:14.2f} {seconds:14.2f}"
              f"   ({config.epochs} epochs x {steps_per_epoch(config)} steps)")

    def minutes(seconds: float) -> str:
        verdict = "within" if seconds / 60 <= args.budget else "over"
        return f"{seconds / 60:6.1f} min = {seconds:8.2f} s ({verdict} the {args.budget:g}-minute budget)"

    print(f"students: {len(rows)} rows x {len(seeds)} seeds; evaluation and report not included")
    projections = {
        f"one process, {torch.get_num_threads()} thread(s)": teacher_total + total,
        "the same, teacher outputs free": teacher_total + total_without_teacher,
        f"teacher outputs free, {args.cores} one-thread workers": teacher_total + total_without_teacher / args.cores,
    }
    for label, seconds in projections.items():
        print(f"{label + ':':45s} {minutes(seconds)}")


if __name__ == "__main__":
    main()
