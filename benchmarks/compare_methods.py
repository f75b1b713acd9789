"""Baseline vs pixel KD vs SSTKD (and any other configured method) over several seeds, mean ± std.

    python benchmarks/compare_methods.py --seeds 0 1 2
    python benchmarks/compare_methods.py --methods sstkd --set sstkd.losses.structural.weight=3 --seeds 0 1 2 \
        --label "sstkd lambda_str=3" --records benchmarks/results/sweep.jsonl

Uses the project's configuration (conf/base + --env) and the data and teacher the pipeline wrote
(`kedro run` first). Each student is trained with the training seed changed; the teacher is shared.
Prints test mIoU and boundary F-score per method as mean ± std, and the per-seed values; each student's
texture-transfer diagnostics to the teacher (``sstkd.evaluation.texture_transfer``) go into the records. ``--records`` appends
one JSON line per (row, seed), so rows measured by separate invocations (e.g. a sweep run one configuration at a
time) are tabulated together, with paired per-seed differences to a reference row, by ``--table``:

    python benchmarks/compare_methods.py --table benchmarks/results/sweep.jsonl --reference pixel_kd
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from kedro.config import OmegaConfigLoader

from sstkd.config import EvaluationParams, MethodParams, StudentParams, TrainingConfig, merged, validate
from sstkd.evaluation.evaluate import evaluate_network
from sstkd.evaluation.texture_transfer import stage1_features, texture_transfer
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
    parser.add_argument("--label", default=None, help="row name (default: the method); one method only")
    parser.add_argument("--records", type=Path, default=None, help="append one JSON line per (row, seed) here")
    parser.add_argument("--table", type=Path, default=None, help="only tabulate the rows of this records file")
    parser.add_argument("--reference", default="pixel_kd", help="row that paired differences are taken to")
    args = parser.parse_args()
    if args.table:
        print(records_table(args.table, args.reference))
        return
    if args.label and len(args.methods) != 1:
        parser.error("--label names one row: give one method")

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
    transfer = validate(EvaluationParams, parameters["evaluation"], "evaluation").texture_transfer
    train_rows = np.unique(np.linspace(0, len(cache["train"]["images"]) - 1,
                                       min(transfer.train_images, len(cache["train"]["images"]))).round().astype(int))
    transfer_images = {"train": np.array(cache["train"]["images"][train_rows]), "test": cache["test"]["images"]}

    def stage1(payload: dict) -> dict:
        network = network_from_payload(payload)
        return {split: stage1_features(network, images, payload["normalization"], transfer.batch_size)
                for split, images in transfer_images.items()}

    teacher_features = stage1(teacher)

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
            row = args.label or method
            diagnostics = texture_transfer({"teacher": teacher_features, "student": stage1(payload)},
                                           np.array(cache["train"]["masks"][train_rows]),
                                           np.array(cache["test"]["masks"]), int(info["num_classes"]),
                                           transfer)["student"]
            results.setdefault(row, []).append((100 * metrics["miou"], 100 * metrics["boundary_fscore"]))
            print(f"{row:24s} seed {seed}: mIoU {100 * metrics['miou']:.2f}  "
                  f"boundary F {100 * metrics['boundary_fscore']:.2f}", flush=True)
            if args.records:
                record = {"row": row, "method": method, "overrides": args.set, "seed": seed,
                          "miou": 100 * metrics["miou"], "boundary_fscore": 100 * metrics["boundary_fscore"]}
                record |= {f"texture_{k}": diagnostics[k] for k in TRANSFER_KEYS}
                args.records.parent.mkdir(parents=True, exist_ok=True)
                with args.records.open("a") as stream:
                    stream.write(json.dumps(record) + "\n")

    lines = [f"seeds {args.seeds}, overrides {args.set or 'none'}, torch threads {torch.get_num_threads()}", "",
             "| method | test mIoU (mean ± std) | boundary F (mean ± std) | per-seed mIoU |", "|---|---|---|---|"]
    for method, values in results.items():
        mious, fscores = [v[0] for v in values], [v[1] for v in values]
        lines.append(f"| {method} | {_mean_std(mious)} | {_mean_std(fscores)} | "
                     + ", ".join(f"{m:.2f}" for m in mious) + " |")
    print("\n".join(lines))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(lines) + "\n")


TRANSFER_KEYS = ("profile_l1", "intensity_l1", "histogram_w1", "cka", "probe_accuracy")


def _mean_std(values: list[float], digits: int = 2) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def records_table(path: Path, reference: str) -> str:
    """Markdown table of a records file: per row mean ± std, per-seed mIoU, and the paired per-seed difference
    to ``reference`` (same seed, same data, same teacher: the seed-to-seed spread cancels in part)."""
    rows: dict[str, dict[int, dict]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            rows.setdefault(record["row"], {})[record["seed"]] = record  # a re-run seed replaces the earlier one
    base = rows.get(reference, {})
    lines = [f"| row | seeds | test mIoU (mean ± std) | boundary F (mean ± std) | per-seed mIoU | "
             f"paired Δ mIoU vs {reference} (mean; per seed) |", "|---|---|---|---|---|---|"]
    for row, by_seed in rows.items():
        seeds = sorted(by_seed)
        mious = [by_seed[s]["miou"] for s in seeds]
        fscores = [by_seed[s]["boundary_fscore"] for s in seeds]
        paired = [by_seed[s]["miou"] - base[s]["miou"] for s in seeds if s in base]
        delta = (f"{statistics.mean(paired):+.2f}; " + ", ".join(f"{d:+.2f}" for d in paired)) if paired else ""
        lines.append(f"| {row} | {' '.join(map(str, seeds))} | {_mean_std(mious)} | {_mean_std(fscores)} | "
                     + ", ".join(f"{m:.2f}" for m in mious) + f" | {delta} |")
    lines += ["", "Texture transfer to the teacher (stage-1 features, test split; mean ± std over seeds; "
              "distances lower = closer, CKA and probe accuracy higher = closer)", "",
              "| row | seeds | " + " | ".join(TRANSFER_KEYS) + " |", "|---|---|" + "---|" * len(TRANSFER_KEYS)]
    for row, by_seed in rows.items():
        seeds = [s for s in sorted(by_seed) if "texture_cka" in by_seed[s]]
        if seeds:
            cells = [_mean_std([by_seed[s][f"texture_{k}"] * (100 if k == "probe_accuracy" else 1)
                                for s in seeds], digits=3) for k in TRANSFER_KEYS]
            lines.append(f"| {row} | {' '.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
