"""Why does pixel KD hurt a student? Learning curves, per-term gradient norms, BatchNorm and the teacher's calibration.

    # the study's data and teacher first, e.g. kedro run --env protocol --pipelines data,teacher --params ...
    python benchmarks/kd_diagnosis.py train --env protocol --data-root data/protocol-dead-leaves \
        --row baseline --row pixel_kd --row "pixel_kd_l1=pixel_kd:losses.pixel_kd.weight=1" \
        --epochs 5 20 --seeds 0 1 --records benchmarks/results/kd_diagnosis/dead_leaves.jsonl
    python benchmarks/kd_diagnosis.py calibration --env protocol --data-root data/protocol-dead-leaves
    python benchmarks/kd_diagnosis.py report --records benchmarks/results/kd_diagnosis/dead_leaves.jsonl

``train`` trains each row (``label=method:key.path=value:...``, the method's configuration with overrides) for each
``--epochs`` and seed through ``train_network`` (what a training node runs), against the study's own teacher and
cache, with a probe after every epoch that measures on copies (the run is the one ``kedro run`` would make):
validation mIoU, each weighted loss term's gradient norm at the logits, the stage-1 feature and the parameters
on one fixed batch of training crops (with its cosine to the cross-entropy's), and KL(teacher ‖ student) on 64
fixed training crops in eval mode (running statistics) and train mode (batch statistics). After training, the
selected model is also evaluated with BatchNorm's running statistics recomputed on training crops ("precise BN").
One JSON line per (row, epochs, seed). ``calibration`` measures the teacher's targets (accuracy, confidence,
entropy, ECE at T = 1 and T = 4 on training crops and on validation images, and how peaked CWD's spatial targets
are). ``report`` prints the tables and draws the learning curves and gradient norms. ``select`` names the row
with the best validation mIoU among finished ones (a weight selection: benchmarks/weight_selection_issue19.sh).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf

from sstkd.catalog.datasets import ArrayCacheDataset, PretrainedBackbonesDataset
from sstkd.config import emulated_cpu_bf16_problems, student_settings
from sstkd.evaluation.calibration import CalibrationMeter
from sstkd.evaluation.evaluate import evaluate_network
from sstkd.evaluation.sanity import last_quarter_gain
from sstkd.pipelines.common import with_pretrained_weights
from sstkd.training.checkpoint import load_checkpoint
from sstkd.training.diagnostics import (
    pixel_kl,
    recompute_batchnorm_statistics,
    term_gradient_norms,
    weight_norms,
)
from sstkd.training.recipe import network_from_payload, split_dataset, train_network, transform_config

PROBE_CROPS = 64  # the KL probe's training crops (4 batches of 16)


def _parameters(env: str, overrides: str = "") -> dict:
    """The env's parameters with ``kedro run --params``-style overrides (``training.cpu_bf16=false,a.b=1``)."""
    parameters = OmegaConfigLoader("conf", base_env="base", default_run_env=env,
                                   merge_strategy={"parameters": "soft"})["parameters"]
    return _apply(parameters, [_override(item) for item in overrides.split(",") if item])


def _override(text: str) -> tuple[str, object]:
    """``a.b=value`` → ("a.b", value typed as kedro's --params types it, by OmegaConf: false, 0.3, 1e-3, [1, 2])."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise SystemExit(f"{text!r}: an override is key.path=value")
    return key, OmegaConf.to_container(OmegaConf.from_dotlist([f"value={value}"]))["value"]


def load_study(data_root: Path) -> dict:
    """The cache, dataset info, statistics, teacher (None before the teacher stage ran: rows without a teacher can
    train) and pretrained backbones that ``kedro run`` wrote under ``data_root``."""
    teacher_file, pretrained = data_root / "06_models/teacher.pt", data_root / "06_models/pretrained"
    return {"cache": ArrayCacheDataset(str(data_root / "05_model_input/cache")).load(),
            "info": json.loads((data_root / "02_intermediate/dataset_info.json").read_text()),
            "statistics": json.loads((data_root / "08_reporting/dataset_statistics.json").read_text()),
            "teacher": load_checkpoint(teacher_file) if teacher_file.is_file() else None,
            "pretrained": PretrainedBackbonesDataset(str(pretrained)).load() if pretrained.is_dir() else None}


def parse_row(text: str) -> tuple[str, str, list[tuple[str, object]]]:
    """``label=method:a.b=1:c=x`` → (label, method, [(path, value)]); ``method`` alone is its own label."""
    label, _, rest = text.partition("=") if "=" in text.split(":")[0] else (text.split(":")[0], "", text)
    method, *overrides = rest.split(":")
    return label, method, [_override(override) for override in overrides]


def _apply(tree: dict, overrides: list[tuple[str, object]]) -> dict:
    tree = copy.deepcopy(tree)
    for dotted, value in overrides:
        keys = dotted.split(".")
        target = tree
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    return tree


def training_crops(study: dict, config, count: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` training crops made by the loop's own transforms (seed 0, ``epoch``)."""
    dataset = split_dataset(study["cache"], "train", transform_config(config, study["statistics"]), train=True, seed=0)
    dataset.set_epoch(epoch)
    samples = [dataset[index] for index in range(min(count, len(dataset)))]
    return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])


def epoch_probe(teacher, probe_batch, kl_crops):
    """The per-epoch probe: gradient norms per term on one batch, KL to the teacher on fixed crops (with a teacher)."""
    def probe(student, criterion, _teacher) -> dict:
        record = {}
        norms = term_gradient_norms(student, criterion, teacher, *probe_batch)
        for term, values in norms.items():
            record |= {f"grad_{term}_{site}": value for site, value in values.items()}
        record |= {f"weight_norm_{kind}": value for kind, value in weight_norms(student).items()}
        if teacher is None:
            return record
        evaluated = copy.deepcopy(student).eval()
        record["kl_eval"], record["kl_train"] = mean_kl(evaluated, teacher, kl_crops), mean_kl(student, teacher, kl_crops)
        return record
    return probe


def train(args) -> None:
    parameters = _parameters(args.env, args.params)
    distill = parameters["distillation"]
    rows = []
    for row in args.row:  # every row checked before the study loads, as kedro run checks before its first node
        label, method, overrides = parse_row(row)
        method_params = _apply(distill["methods"][method], overrides)
        emulated = emulated_cpu_bf16_problems(_apply(parameters, [(f"distillation.methods.{method}", method_params)]),
                                              teacher=False, methods=[method])
        if emulated:
            raise SystemExit(f"{label}: " + "\n".join(emulated))
        rows.append((label, method, overrides, method_params))
    study = load_study(args.data_root)
    teacher = network_from_payload(study["teacher"], source="teacher").eval() if study["teacher"] else None
    num_classes = int(study["info"]["num_classes"])
    for label, method, overrides, method_params in rows:
        for epochs in args.epochs:
            for seed in args.seeds:
                student, spec, config = student_settings(parameters["training"], distill["student"], method_params,
                                                         method, seed)
                config = config.model_copy(update={"epochs": epochs, "progress": False, "checkpoint_root": None})
                probe_images, probe_masks = training_crops(study, config, config.batch_size, epoch=0)
                kl_crops, _ = training_crops(study, config, PROBE_CROPS, epoch=1)
                losses = {term: dict(options or {}) for term, options in spec.losses.items()}
                uses_teacher = any(term != "cross_entropy" for term in losses)
                if uses_teacher and teacher is None:
                    raise SystemExit(f"{label}: needs a teacher, and {args.data_root}/06_models/teacher.pt does not "
                                     "exist yet: run the teacher stage first")
                network_config, _ = with_pretrained_weights(student.network, study["pretrained"],
                                                            "distillation.student.network")
                started = time.perf_counter()
                payload, result = train_network(
                    method, study["cache"], study["info"], study["statistics"], network_config, losses, config,
                    teacher_payload=study["teacher"] if uses_teacher else None,
                    checkpoint_root=args.checkpoint_root / label / f"{epochs}_epochs_seed_{seed}"
                    if args.checkpoint_root else None,
                    probes=[epoch_probe(teacher, (probe_images, probe_masks), kl_crops)] if args.probes else [])
                seconds = time.perf_counter() - started
                network = network_from_payload(payload).eval()
                precise = recompute_batchnorm_statistics(
                    network, training_crops(study, config, len(study["cache"]["train"]["images"]), epoch=2)[0].split(16))
                test, val = (study["cache"][split] for split in ("test", "val"))
                record = {
                    "row": label, "method": method, "overrides": overrides, "losses": losses, "epochs": epochs,
                    "seed": seed,
                    "probes": args.probes,
                    "threads": torch.get_num_threads(), "seconds": seconds, "best_epoch": result.best_epoch,
                    "history": result.history,
                    "test_miou": 100 * evaluate_network(network, test["images"], test["masks"], num_classes,
                                                        payload["normalization"])["miou"],
                    "val_miou": 100 * result.best_miou,
                    "precise_bn_test_miou": 100 * evaluate_network(precise, test["images"], test["masks"], num_classes,
                                                                   payload["normalization"])["miou"],
                    "precise_bn_val_miou": 100 * evaluate_network(precise, val["images"], val["masks"], num_classes,
                                                                  payload["normalization"])["miou"],
                } | (_final_kl(network, precise, teacher, kl_crops) if teacher is not None else {})
                kl = (f"KL eval {record['kl_eval']:.3f} / train {record['kl_train']:.3f} / precise BN "
                      f"{record['kl_precise_bn']:.3f}, " if teacher is not None else "")
                print(f"{label:22s} {epochs:3d} ep seed {seed}: test mIoU {record['test_miou']:.2f} "
                      f"(precise BN {record['precise_bn_test_miou']:.2f}), best epoch {result.best_epoch}, "
                      f"{kl}{seconds:.0f} s", flush=True)
                args.records.parent.mkdir(parents=True, exist_ok=True)
                with args.records.open("a") as stream:
                    stream.write(json.dumps(record) + "\n")


def mean_kl(model, teacher, crops: torch.Tensor) -> float:
    """KL(teacher ‖ student) on the probe crops, in batches of 16, in ``model``'s current mode."""
    return statistics.mean(pixel_kl(model, teacher, batch) for batch in crops.split(16))


def _final_kl(network, precise, teacher, crops) -> dict:
    """KL(teacher ‖ student) of the selected model on the probe crops: eval mode, train mode, precise BN."""
    values = {"kl_eval": mean_kl(network.eval(), teacher, crops), "kl_train": mean_kl(network.train(), teacher, crops),
              "kl_precise_bn": mean_kl(precise, teacher, crops)}
    network.eval()
    return values


def spatial_entropy(logits: torch.Tensor, temperature: float) -> float:
    """Mean over (B, K) of the entropy of CWD's per-channel spatial softmax, as a share of log(H·W)."""
    log_p = F.log_softmax(logits.float().flatten(2) / temperature, dim=2)
    return float((-(log_p.exp() * log_p).sum(2)).mean() / math.log(log_p.shape[2]))


@torch.no_grad()
def calibration(args) -> None:
    parameters = _parameters(args.env, args.params)
    study = load_study(args.data_root)
    teacher = network_from_payload(study["teacher"], source="teacher").eval()
    _, _, config = student_settings(parameters["training"], parameters["distillation"]["student"],
                                    parameters["distillation"]["methods"]["baseline"], "baseline", 0)
    images, masks = training_crops(study, config, len(study["cache"]["train"]["images"]), epoch=0)
    val = split_dataset(study["cache"], "val", transform_config(config, study["statistics"]), train=False, seed=0)
    val_images = torch.stack([val[i][0] for i in range(len(val))])
    val_masks = torch.stack([val[i][1] for i in range(len(val))])
    lines = [f"teacher {study['teacher'].get('name', 'teacher')} of {args.data_root}; training crops: the loop's "
             f"transforms ({len(images)} crops of {tuple(config.crop_size)}); validation: whole images", "",
             "| split | T | pixel accuracy | mean confidence | ECE | mean entropy (nats) | entropy / log K |",
             "|---|---|---|---|---|---|---|"]
    for split, split_images, split_masks in (("train crops", images, masks), ("val", val_images, val_masks)):
        logits = torch.cat([teacher(batch).logits for batch in split_images.split(16)])
        for temperature in (1.0, 4.0):
            meter = CalibrationMeter(temperature)
            meter.update(logits, split_masks)
            result = meter.compute()
            lines.append(f"| {split} | {temperature:g} | {100 * result['accuracy']:.2f}% | "
                         f"{100 * result['mean_confidence']:.2f}% | {100 * result['ece']:.2f}% | "
                         f"{result['mean_entropy']:.3f} | {result['mean_entropy'] / result['max_entropy']:.3f} |")
        if split == "train crops":
            cwd = spatial_entropy(logits, 4.0)
            lines.append(f"| {split} | CWD, T 4 | spatial softmax per channel: entropy / log(H·W) = {cwd:.3f} "
                         f"(T 1: {spatial_entropy(logits, 1.0):.3f}) | | | | |")
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean_std(values: list[float], digits: int = 2) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def _mean_std_of(group: list[dict], key: str, digits: int = 3) -> str:
    """Mean ± std of ``key`` over the records that have it (rows trained without a teacher have no KL)."""
    values = [r[key] for r in group if key in r]
    return _mean_std(values, digits) if values else "–"


def report(args) -> None:
    records = _records(args.records)
    groups: dict[tuple[str, int], list[dict]] = {}
    for record in records:
        groups.setdefault((record["row"], record["epochs"]), []).append(record)
    lines = ["| row | epochs | seeds | test mIoU | precise-BN test mIoU | best epoch | val mIoU, last quarter gain | "
             "KL eval | KL train mode | KL precise BN | s / student |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (row, epochs), group in groups.items():
        gains = [last_quarter_gain([h["val_miou"] for h in record["history"]]) for record in group]  # the report's
        lines.append(
            f"| {row} | {epochs} | {' '.join(str(r['seed']) for r in group)} | "
            f"{_mean_std([r['test_miou'] for r in group])} | {_mean_std([r['precise_bn_test_miou'] for r in group])} | "
            f"{' '.join(str(r['best_epoch']) for r in group)} | {_mean_std(gains)} | "
            f"{_mean_std_of(group, 'kl_eval')} | {_mean_std_of(group, 'kl_train')} | "
            f"{_mean_std_of(group, 'kl_precise_bn')} | {statistics.mean(r['seconds'] for r in group):.0f} |")
    lines += ["", "Gradient norms on the fixed batch (weighted terms; mean over seeds), at epochs 1 / middle / last: "
              "parameters (cosine to the cross-entropy's), logits, stage 1", "",
              "| row | epochs | term | ‖∇θ‖ | cos(∇θ, ∇θ CE) | ‖∇ logits‖ | ‖∇ stage 1‖ |", "|---|---|---|---|---|---|---|"]
    for (row, epochs), group in groups.items():
        picks = sorted({0, (epochs - 1) // 2, epochs - 1})
        terms = sorted({key[5:-len("_parameters")] for key in group[0]["history"][0] if key.endswith("_parameters")},
                       key=lambda t: (t != "cross_entropy", t))

        def at(term: str, site: str, group=group, picks=picks) -> str:
            values = [[r["history"][e].get(f"grad_{term}_{site}", float("nan")) for r in group] for e in picks]
            return " / ".join(f"{statistics.mean(v):.3g}" for v in values)
        for term in terms:
            lines.append(f"| {row} | {epochs} | {term} | {at(term, 'parameters')} | "
                         f"{at(term, 'cosine_to_cross_entropy') if term != 'cross_entropy' else ''} | "
                         f"{at(term, 'logits')} | {at(term, 'stage1')} |")
    text = "\n".join(lines)
    print(text)
    output = args.output or args.records.with_suffix("")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(text + "\n")
    _plot(groups, output.with_name(output.name + "_curves.png"))


def select(args) -> None:
    """A weight selection's rule: of one seed's rows (one records file each, every one of them finished), the one
    with the best validation mIoU at its best epoch. The table goes to stderr, the chosen row's label to stdout."""
    rows = []
    for path in args.records:
        if not path.is_file() or not path.read_text().strip():
            raise SystemExit(f"{path}: no record yet (its row has not finished, or failed: see its .log), so nothing "
                             "is selected")
        try:
            rows += _records(path)
        except json.JSONDecodeError as error:
            raise SystemExit(f"{path}: a record cut short ({error}); move it away and run its row again") from None
    if any(not math.isfinite(r["val_miou"]) for r in rows):
        raise SystemExit("no finite validation mIoU for " + ", ".join(r["row"] for r in rows
                                                                       if not math.isfinite(r["val_miou"])))
    if len({(r["seed"], r["epochs"]) for r in rows}) > 1:
        raise SystemExit("the records mix seeds or schedules: "
                         + ", ".join(sorted({f"{r['row']} seed {r['seed']}, {r['epochs']} epochs" for r in rows})))
    for record in sorted(rows, key=lambda r: -r["val_miou"]):  # no test mIoU here: nobody sees test while choosing
        print(f"{record['row']:>24s}  val mIoU {record['val_miou']:.2f} (epoch {record['best_epoch']})", file=sys.stderr)
    print(max(rows, key=lambda r: r["val_miou"])["row"])


def _plot(groups: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for (row, epochs), group in groups.items():
        epochs_axis = np.arange(1, epochs + 1)
        curves = np.array([[h["val_miou"] * 100 for h in r["history"]] for r in group])
        line, = axes[0].plot(epochs_axis, curves.mean(0), label=f"{row}, {epochs} ep")
        if "kl_eval" in group[0]["history"][0]:
            kl = np.array([[h["kl_eval"] for h in r["history"]] for r in group])
            axes[1].plot(epochs_axis, kl.mean(0), color=line.get_color(), label=f"{row}, {epochs} ep (eval)")
            axes[1].plot(epochs_axis, np.array([[h["kl_train"] for h in r["history"]] for r in group]).mean(0),
                         color=line.get_color(), linestyle=":")
        for term, style in (("cross_entropy", "-"), ("pixel_kd", "--")):
            key = f"grad_{term}_parameters"
            if key in group[0]["history"][0]:
                norms = np.array([[h[key] for h in r["history"]] for r in group]).mean(0)
                axes[2].plot(epochs_axis, norms, color=line.get_color(), linestyle=style,
                             label=f"{row}, {epochs} ep: {term}")
    axes[0].set(xlabel="epoch", ylabel="val mIoU (%)", title="learning curves (mean over seeds)")
    axes[1].set(xlabel="epoch", ylabel="KL(teacher ‖ student)", yscale="log", title="KL on 64 training crops: eval (—), train mode (⋯)")
    axes[2].set(xlabel="epoch", ylabel="‖∇θ‖ on a fixed batch", yscale="log",
                title="gradient norm per term (— CE, -- pixel KD)")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"figure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "calibration"):
        command = commands.add_parser(name)
        command.add_argument("--env", default="protocol")
        command.add_argument("--data-root", type=Path, required=True)
        command.add_argument("--params", default="", help="overrides as kedro run takes them: a.b=1,c.d=false")
    train_command = commands.choices["train"]
    train_command.add_argument("--row", action="append", required=True, help="label=method:key.path=value:...")
    train_command.add_argument("--epochs", type=int, nargs="+", default=[5])
    train_command.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    train_command.add_argument("--records", type=Path, required=True)
    train_command.add_argument("--checkpoint-root", type=Path, default=None,
                               help="per-epoch checkpoints here: a run killed part-way resumes where it stopped")
    # a weight selection reads only the validation curve: the per-epoch probes are ~40% of a KD student's time
    train_command.add_argument("--probes", action=argparse.BooleanOptionalAction, default=True,
                               help="the per-epoch gradient-norm and KL probes (--no-probes: validation mIoU only)")
    commands.choices["calibration"].add_argument("--output", type=Path, default=None)
    report_command = commands.add_parser("report")
    report_command.add_argument("--records", type=Path, required=True)
    report_command.add_argument("--output", type=Path, default=None, help="path stem of the .md and _curves.png")
    select_command = commands.add_parser("select", help="the best row on validation (stdout: its label)")
    select_command.add_argument("--records", type=Path, nargs="+", required=True)
    args = parser.parse_args()
    # the training loop's one line per epoch (loss, val mIoU, img/s): a 120-epoch row runs for most of an hour
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    {"train": train, "calibration": calibration, "report": report, "select": select}[args.command](args)


if __name__ == "__main__":
    main()
