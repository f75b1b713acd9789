"""Baseline vs pixel KD vs SSTKD (and any other configured method) over several seeds, mean ± std.

    python benchmarks/compare_methods.py --seeds 0 1 2
    python benchmarks/compare_methods.py --methods sstkd --set sstkd.losses.structural.weight=3 --seeds 0 1 2

Uses the project's configuration (conf/base + --env) and the data and teacher the pipeline wrote
(`kedro run` first). Each student is trained with the training seed changed; the teacher is shared.
Prints test mIoU and boundary F-score per method as mean ± std, and the per-seed values.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from kedro.config import OmegaConfigLoader

from sstkd.config import MethodParams, StudentParams, TrainingConfig, merged, validate
from sstkd.evaluation.evaluate import evaluate_network
from sstkd.training.checkpoint import load_checkpoint
from sstkd.training.recipe import network_from_payload, train_network


def _set(tree: dict, dotted: str, value: str) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = json.loads(value) if value[:1] in "[{0123456789-.tf" else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["baseline", "pixel_kd", "sstkd"])
    parser.add_argument("--set", action="append", default=[], help="METHOD.path.to.key=value override")
    parser.add_argument("--env", default="local")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None, help="also write the table (Markdown) here")
    args = parser.parse_args()

    parameters = OmegaConfigLoader("conf", base_env="base", default_run_env=args.env,
                                   merge_strategy={"parameters": "soft"})["parameters"]
    methods = parameters["distillation"]["methods"]
    for override in args.set:
        key, value = override.split("=", 1)
        _set(methods, key, value)
    data = Path("data")
    cache = {split: {name: np.load(data / f"05_model_input/cache/{split}/{name}.npy", mmap_mode="r")
                     for name in ("images", "masks")} for split in ("train", "val", "test")}
    info = json.loads((data / "02_intermediate/dataset_info.json").read_text())
    statistics_ = json.loads((data / "08_reporting/dataset_statistics.json").read_text())
    teacher = load_checkpoint(data / "06_models/teacher.pt")
    student = validate(StudentParams, parameters["distillation"]["student"], "distillation.student")

    results: dict[str, list[tuple[float, float]]] = {}
    for method in args.methods:
        spec = validate(MethodParams, methods[method], f"distillation.methods.{method}")
        for seed in args.seeds:
            training = merged(merged(parameters["training"], student.training), spec.training)
            training |= {"seed": seed, "progress": False, "checkpoint_root": None}
            if args.epochs:
                training["epochs"] = args.epochs
            config = validate(TrainingConfig, training, "training")
            losses = {k: dict(v or {}) for k, v in spec.losses.items()}
            uses_teacher = any(k != "cross_entropy" for k in losses)
            payload, _ = train_network(method, cache, info, statistics_, student.network, losses, config,
                                       teacher if uses_teacher else None)
            metrics = evaluate_network(network_from_payload(payload), cache["test"]["images"],
                                       cache["test"]["masks"], int(info["num_classes"]), payload["normalization"])
            results.setdefault(method, []).append((100 * metrics["miou"], 100 * metrics["boundary_fscore"]))
            print(f"{method:24s} seed {seed}: mIoU {100 * metrics['miou']:.2f}  "
                  f"boundary F {100 * metrics['boundary_fscore']:.2f}", flush=True)

    lines = [f"seeds {args.seeds}, overrides {args.set or 'none'}, torch threads {torch.get_num_threads()}", "",
             "| method | test mIoU (mean ± std) | boundary F (mean ± std) | per-seed mIoU |", "|---|---|---|---|"]
    for method, values in results.items():
        mious, fscores = [v[0] for v in values], [v[1] for v in values]
        spread = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
        lines.append(f"| {method} | {statistics.mean(mious):.2f} ± {spread(mious):.2f} | "
                     f"{statistics.mean(fscores):.2f} ± {spread(fscores):.2f} | "
                     + ", ".join(f"{m:.2f}" for m in mious) + " |")
    print("\n".join(lines))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
