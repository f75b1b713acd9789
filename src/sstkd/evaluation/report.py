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
