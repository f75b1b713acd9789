"""The study's report: one row per model, deltas over the baseline student, a Markdown rendering."""

from __future__ import annotations

import math

import pandas as pd

REPORT_COLUMNS = [
    "model", "role", "architecture", "miou", "delta_miou", "pixel_accuracy", "mean_accuracy", "boundary_iou",
    "boundary_fscore", "delta_boundary_fscore", "params_millions", "gflops", "cpu_latency_ms", "best_val_miou",
]


def report_table(results: dict[str, dict], baseline: str = "baseline") -> pd.DataFrame:
    """``results[model]`` holds ``metrics``, ``cost``, ``role``, ``architecture``; metrics in percent."""
    rows = []
    base = results.get(baseline, {}).get("metrics")
    for model, result in results.items():
        metrics, cost = result["metrics"], result["cost"]
        row = {
            "model": model,
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
    return pd.DataFrame(rows, columns=REPORT_COLUMNS).round(3)


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def report_markdown(table: pd.DataFrame, results: dict[str, dict], class_names: list[str], title: str) -> str:
    lines = [f"# {title}", "", "Metrics on the evaluation split, in percent. Deltas are over the baseline student.", ""]
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
    lines += ["", "## Per-class IoU (%)", "", "| class | " + " | ".join(results) + " |",
              "|---|" + "---|" * len(results)]
    for index, name in enumerate(class_names):
        values = [results[m]["metrics"]["per_class_iou"][index] for m in results]
        lines.append(f"| {name} | " + " | ".join("–" if v is None else f"{100 * v:.1f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


TRANSFER_COLUMNS = ["model", "channels", "profile_l1", "intensity_l1", "histogram_w1", "cka", "probe_accuracy",
                    "probe_miou"]


def transfer_table(results: dict[str, dict]) -> pd.DataFrame:
    """One row per model from ``texture_transfer`` results: distances to the teacher (lower = closer), CKA to
    the teacher (higher = closer), probe accuracy/mIoU in percent, and the DTIEM distances per level count."""
    rows = []
    for model, result in results.items():
        row = {key: result[key] for key in TRANSFER_COLUMNS[1:6]} | {"model": model}
        row["probe_accuracy"] = 100 * result["probe_accuracy"]
        row["probe_miou"] = 100 * result["probe_miou"]
        for levels, distances in result["per_quantization"].items():
            row[f"intensity_l1_n{levels}"] = distances["equalized_l1"]
            row[f"histogram_w1_n{levels}"] = distances["histogram_w1"]
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=TRANSFER_COLUMNS)
    extra = [c for c in table.columns if c not in TRANSFER_COLUMNS]
    return table[TRANSFER_COLUMNS + extra].round(4)


def transfer_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    per_level = [c for c in table.columns if c.startswith(("intensity_l1_n", "histogram_w1_n"))]
    shown = TRANSFER_COLUMNS + per_level
    lines = ["", "## Texture transfer: stage-1 features vs the teacher's", "",
             "Computed on the evaluation split from each network's backbone stage 1 (no adapter). Lower is closer for "
             "the distances: `profile_l1` = L1 between contourlet directional energy profiles (levels × directions, "
             "sum 1; range 0–2); `intensity_l1` = mean L1 between DTIEM equalised intensity maps and `histogram_w1` "
             "= Wasserstein distance between denoised intensity histograms, averaged over the quantisation level "
             "counts (per count in the `_nN` columns). Higher is closer for `cka` (linear CKA to the teacher's "
             "features at the same pixels). `probe_accuracy`/`probe_miou` (%): a linear classifier on the frozen "
             "stage-1 features predicting each pixel's class (fitted on training pixels); the teacher's row is "
             "the reference.", "",
             "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) if c in ("model", "channels") or c.startswith("probe")
                                       else f"{row[c]:.4f}" for c in shown) + " |")
    return "\n".join(lines) + "\n"
