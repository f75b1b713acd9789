"""The study's report: one row per trained model (method and seed), deltas over the same seed's baseline
student, per-class IoU averaged over seeds, and the texture-transfer measures; a Markdown rendering."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sstkd.study import model_name, split_model_name

REPORT_COLUMNS = [
    "model", "method", "seed", "role", "architecture", "miou", "delta_miou", "pixel_accuracy", "mean_accuracy", "boundary_iou",
    "boundary_fscore", "delta_boundary_fscore", "params_millions", "gflops", "cpu_latency_ms", "best_val_miou",
]


def report_table(results: dict[str, dict], baseline: str = "baseline") -> pd.DataFrame:
    """``results[model]`` holds ``metrics``, ``cost``, ``role``, ``architecture``; metrics in percent. A student's
    deltas are over the baseline student of the same seed."""
    rows = []
    for model, result in results.items():
        metrics, cost = result["metrics"], result["cost"]
        method, seed = split_model_name(model)
        base = results.get(model_name(baseline, seed), {}).get("metrics") if seed is not None else None
        row = {
            "model": model,
            "method": method,
            "seed": seed,
            "role": result["role"],
            "architecture": result["architecture"],
            "miou": 100 * metrics["miou"],
            "pixel_accuracy": 100 * metrics["pixel_accuracy"],
            "mean_accuracy": 100 * metrics["mean_accuracy"],
            "boundary_iou": 100 * metrics["boundary_iou"],
            "boundary_fscore": 100 * metrics["boundary_fscore"],
            "params_millions": cost["params_millions"],
            "gflops": cost["gflops"],
            "cpu_latency_ms": cost["cpu_latency_ms"],
            "best_val_miou": 100 * result.get("best_val_miou", math.nan),
        }
        is_student = result["role"] == "student"
        row["delta_miou"] = 100 * (metrics["miou"] - base["miou"]) if base and is_student else math.nan
        row["delta_boundary_fscore"] = (100 * (metrics["boundary_fscore"] - base["boundary_fscore"])
                                        if base and is_student else math.nan)
        rows.append(row)
    table = pd.DataFrame(rows, columns=REPORT_COLUMNS).round(3)
    table["seed"] = table["seed"].astype("Int64")  # the teacher has none
    return table


def per_class_by_method(results: dict[str, dict]) -> dict[str, list[float | None]]:
    """Per-class IoU of each method, averaged over its seeds (``None`` for a class absent from the split)."""
    grouped: dict[str, list[list]] = {}
    for model, result in results.items():
        grouped.setdefault(split_model_name(model)[0], []).append(result["metrics"]["per_class_iou"])
    averaged = {}
    for method, runs in grouped.items():
        values = np.array([[np.nan if v is None else v for v in run] for run in runs], dtype=float)
        means = [None if np.isnan(column).all() else float(np.nanmean(column)) for column in values.T]
        averaged[method] = means
    return averaged


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def report_markdown(table: pd.DataFrame, results: dict[str, dict], class_names: list[str], title: str,
                    study_section: str = "") -> str:
    lines = [f"# {title}", "", study_section,
             "## Every trained model", "",
             "Metrics on the evaluation split, in percent. Deltas are over the baseline student of the same seed.", ""]
    shown = ["model", "role", "architecture", "miou", "delta_miou", "boundary_fscore", "delta_boundary_fscore",
             "boundary_iou", "pixel_accuracy", "params_millions", "gflops", "cpu_latency_ms"]
    lines.append("| " + " | ".join(shown) + " |")
    lines.append("|" + "---|" * len(shown))
    for _, row in table.iterrows():
        cells = []
        for column in shown:
            value = row[column]
            if column.startswith("delta") and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:+.2f}")
            else:
                cells.append(_cell(value))
        lines.append("| " + " | ".join(cells) + " |")
    per_class = per_class_by_method(results)
    lines += ["", "## Per-class IoU (%, mean over seeds)", "", "| class | " + " | ".join(per_class) + " |",
              "|---|" + "---|" * len(per_class)]
    for index, name in enumerate(class_names):
        values = [per_class[m][index] for m in per_class]
        lines.append(f"| {name} | " + " | ".join("–" if v is None else f"{100 * v:.1f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


TRANSFER_COLUMNS = ["model", "method", "seed", "channels", "profile_l1", "intensity_l1", "histogram_w1", "cka", "probe_accuracy",
                    "probe_miou", "probe_accuracy_at_width", "probe_width"]


def transfer_table(results: dict[str, dict]) -> pd.DataFrame:
    """One row per model from ``texture_transfer`` results: distances to the teacher (lower = closer), CKA to
    the teacher (higher = closer), probe accuracy/mIoU in percent, and the DTIEM distances per level count."""
    rows = []
    for model, result in results.items():
        method, seed = split_model_name(model)
        row = {key: result[key] for key in TRANSFER_COLUMNS[3:8]} | {"model": model, "method": method, "seed": seed}
        row["probe_accuracy"] = 100 * result["probe_accuracy"]
        row["probe_miou"] = 100 * result["probe_miou"]
        # results written before the width-matched probe have none: NaN, never the unmatched probe's value
        row["probe_accuracy_at_width"] = 100 * result.get("probe_accuracy_at_width", float("nan"))
        row["probe_width"] = result.get("probe_width", float("nan"))
        for levels, distances in result["per_quantization"].items():
            row[f"intensity_l1_n{levels}"] = distances["equalized_l1"]
            row[f"histogram_w1_n{levels}"] = distances["histogram_w1"]
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=TRANSFER_COLUMNS)
    extra = [c for c in table.columns if c not in TRANSFER_COLUMNS]
    table = table[TRANSFER_COLUMNS + extra].round(4)
    table["seed"] = table["seed"].astype("Int64")
    return table


TRANSFER_MEASURES = ("profile_l1", "intensity_l1", "histogram_w1", "cka", "probe_accuracy", "probe_miou",
                     "probe_accuracy_at_width")


def transfer_by_method(table: pd.DataFrame) -> pd.DataFrame:
    """Each texture-transfer measure per method: mean and sample std over its seeds (``<measure>_mean/_std``)."""
    if table.empty:
        return pd.DataFrame(columns=["method", "seeds"])
    grouped = table.groupby("method", sort=False)
    summary = grouped.size().rename("seeds").to_frame()
    for measure in TRANSFER_MEASURES:
        summary[f"{measure}_mean"] = grouped[measure].mean()
        summary[f"{measure}_std"] = grouped[measure].std(ddof=1)
    return summary.reset_index()


def transfer_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    by_method = transfer_by_method(table)
    lines = ["", "## Texture transfer: stage-1 features vs the teacher's", "",
             "Computed on the evaluation split from each network's backbone stage 1 (no adapter). Lower is closer for "
             "the distances: `profile_l1` = L1 between contourlet directional energy profiles (levels × directions, "
             "sum 1; range 0–2); `intensity_l1` = mean L1 between DTIEM equalised intensity maps and `histogram_w1` "
             "= Wasserstein distance between denoised intensity histograms, averaged over the quantisation level "
             "counts (per count in the `_nN` columns). Higher is closer for `cka` (linear CKA to the teacher's "
             "features at the same pixels). `probe_accuracy`/`probe_miou` (%): a linear classifier on the frozen "
             "stage-1 features predicting each pixel's class (fitted on training pixels); the teacher's row is "
             "the reference. `probe_accuracy_at_width` (%): the same probe on each network's leading principal "
             "components, as many as the narrowest network has channels (a wider stage 1 gives a probe more "
             "inputs). Mean ± sample std over each method's seeds; every model and the distances per "
             "quantisation level count are in `texture_transfer.csv`.", "",
             "| method | seeds | " + " | ".join(TRANSFER_MEASURES) + " |", "|---|---|" + "---|" * len(TRANSFER_MEASURES)]
    for _, row in by_method.iterrows():
        cells = []
        for measure in TRANSFER_MEASURES:
            digits = 2 if measure.startswith("probe") else 4
            mean, std = row[f"{measure}_mean"], row[f"{measure}_std"]
            cells.append(f"{mean:.{digits}f}" + ("" if pd.isna(std) else f" ± {std:.{digits}f}"))
        lines.append(f"| {row['method']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
