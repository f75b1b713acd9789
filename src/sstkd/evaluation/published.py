"""Published numbers of the protocols the paper environments reproduce (``published_results.yml``), placed beside
a study's own rows in its report."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import pandas as pd
import yaml

TABLE = Path(__file__).with_name("published_results.yml")


@cache
def published_results() -> dict:
    return yaml.safe_load(TABLE.read_text())


def parse_published(key: str) -> tuple[str, str]:
    """``"<protocol>:<student>"`` → its two parts, checked against the table (errors list what exists)."""
    protocol, _, student = key.partition(":")
    table = published_results()
    if protocol not in table:
        raise ValueError(f"unknown published protocol {protocol!r}; known: {', '.join(table)}")
    students = table[protocol]["students"]
    if student not in students:
        raise ValueError(f"{protocol} publishes no student {student!r}; it has {', '.join(students)}")
    return protocol, student


def beside_published(methods: pd.DataFrame, key: str) -> pd.DataFrame:
    """One row per published number of ``key``: the published mIoU, ours (mean and interval over seeds, where this
    study ran that method) and ours − published."""
    protocol, student = parse_published(key)
    entry = published_results()[protocol]
    published = {"teacher": entry.get("teacher")} | entry["students"][student]
    ours = methods.set_index("method") if len(methods) else pd.DataFrame()
    rows = []
    for method, value in published.items():
        if value is None:
            continue
        mine = ours.loc[method] if method in ours.index else None
        mean = float(mine["miou_mean"]) if mine is not None else math.nan
        rows.append({"method": method, "published_miou": float(value), "our_miou_mean": mean,
                     "our_miou_ci_low": float(mine["miou_ci_low"]) if mine is not None else math.nan,
                     "our_miou_ci_high": float(mine["miou_ci_high"]) if mine is not None else math.nan,
                     "ours_minus_published": mean - float(value)})
    return pd.DataFrame(rows)


def published_markdown(table: pd.DataFrame, key: str, images_resized_to: tuple[int, int] | None = None) -> str:
    """The report's section; ``images_resized_to``: the size the study's cache resized every image to (the published
    numbers are of images at their own size), named as the reason ours are not like for like."""
    protocol, student = parse_published(key)
    entry = published_results()[protocol]

    def cell(value, digits=2):
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    lines = ["", f"## Beside the published numbers: {protocol}, student {student}", "",
             f"{entry['dataset']}. Published rows from {entry['source']}. *Ours* are this study's (its "
             "evaluation.split, mean and interval over seeds); a dash: this study did not run that method." + (
                 f" **Not like for like:** this study's cache resized every image to {images_resized_to[0]}x"
                 f"{images_resized_to[1]} (`preprocessing.cache_size`); the published numbers train on crops of the "
                 "images at their own size and evaluate each whole." if images_resized_to else ""), "",
             "| method | published mIoU | ours: mIoU mean [interval] | ours − published |", "|---|---|---|---|"]
    for _, row in table.iterrows():
        interval = (f" [{cell(row['our_miou_ci_low'])}, {cell(row['our_miou_ci_high'])}]"
                    if not math.isnan(row["our_miou_ci_low"]) else "")
        lines.append(f"| {row['method']} | {cell(row['published_miou'])} | **{cell(row['our_miou_mean'])}**{interval} | "
                     f"{cell(row['ours_minus_published'], 2)} |")
    return "\n".join(lines) + "\n"
