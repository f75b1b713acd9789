"""The study's verdict: per method over seeds, intervals of the mean and paired differences to the references.

Input is the per-model table of :func:`sstkd.evaluation.report.report_table` (one row per trained model, metrics in
percent, ``method`` and ``seed`` columns). Intervals of a method's mean are Student t over its seeds; differences
between methods are **paired** by seed (same seed = same data order, augmentation and initialisation) and their
interval is the paired t interval of the per-seed differences (:mod:`sstkd.evaluation.statistics`). The teacher is
trained once per study: its value is a constant, not a sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from sstkd.evaluation.statistics import (
    gap_recovered,
    holm_adjusted,
    mean_interval,
    paired_comparison,
    paired_p_value,
    ratio_interval,
)

SUMMARY_METRICS = ("miou", "boundary_fscore")
TEST_NAME = "paired t over seeds"


@dataclass(frozen=True)
class StudySummary:
    methods: pd.DataFrame  # one row per method (the teacher first): seeds, mean, std, interval per metric, gap
    comparisons: pd.DataFrame  # one row per (method, reference, metric): the paired difference and its verdict
    confidence: float
    split: str  # the split every number is measured on (``evaluation.split``), named wherever one is shown
    baseline: str = "baseline"  # the method the gap recovered is measured from

    @property
    def seeds(self) -> list[int]:
        return sorted({int(s) for s in self.methods.attrs.get("seeds", [])})


def _by_seed(per_model: pd.DataFrame, metric: str) -> dict[str, dict[int, float]]:
    students = per_model[per_model["role"] == "student"]
    return {method: {int(row["seed"]): float(row[metric]) for _, row in rows.iterrows()}
            for method, rows in students.groupby("method", sort=False)}


def summarize_study(per_model: pd.DataFrame, references: list[str] | tuple[str, ...] = ("baseline", "pixel_kd"),
                    confidence: float = 0.95, baseline: str = "baseline", *, split: str) -> StudySummary:
    by_seed = {metric: _by_seed(per_model, metric) for metric in SUMMARY_METRICS}
    teachers = per_model[per_model["role"] == "teacher"]
    rows = []
    for _, teacher in teachers.iterrows():
        row = {"method": teacher["model"], "role": "teacher", "seeds": 1}
        for metric in SUMMARY_METRICS:
            row |= {f"{metric}_mean": float(teacher[metric]), f"{metric}_std": math.nan,
                    f"{metric}_ci_low": math.nan, f"{metric}_ci_high": math.nan}
        rows.append(row)
    teacher_miou = float(teachers["miou"].iloc[0]) if len(teachers) else math.nan

    comparisons = []
    for method, seeds in by_seed["miou"].items():
        row = {"method": method, "role": "student", "seeds": len(seeds)}
        for metric in SUMMARY_METRICS:
            interval = mean_interval(list(by_seed[metric][method].values()), confidence)
            row |= {f"{metric}_mean": interval.mean, f"{metric}_std": interval.std,
                    f"{metric}_ci_low": interval.low, f"{metric}_ci_high": interval.high}
        row |= _gap_recovered(method, baseline, by_seed["miou"], teacher_miou, confidence)
        rows.append(row)
        for reference in references:
            if reference == method or reference not in by_seed["miou"] or _earlier(method, reference, references):
                continue
            if not set(by_seed["miou"][method]) & set(by_seed["miou"][reference]):
                continue  # no seed in common: nothing to pair
            for metric in SUMMARY_METRICS:
                comparison = paired_comparison(method, reference, by_seed[metric], confidence)
                difference = comparison.difference
                comparisons.append({
                    "method": method, "reference": reference, "metric": metric, "seeds": difference.n,
                    "difference_mean": difference.mean, "difference_std": difference.std,
                    "ci_low": difference.low, "ci_high": difference.high, "verdict": comparison.verdict,
                    "test": TEST_NAME, "p_value": paired_p_value(difference),
                })
    _holm_verdicts(comparisons, 1 - confidence)
    methods = pd.DataFrame(rows).round(4)
    methods["split"] = split  # study.csv says which split it measured, for whoever reads it back (the console table)
    methods.attrs["seeds"] = sorted({s for seeds in by_seed["miou"].values() for s in seeds})
    methods.attrs["missing_references"] = [r for r in references if r not in by_seed["miou"]]
    return StudySummary(methods, pd.DataFrame(comparisons, columns=[
        "method", "reference", "metric", "seeds", "difference_mean", "difference_std", "ci_low", "ci_high",
        "verdict", "test", "p_value", "p_holm", "verdict_holm"]).round(_FOUR_DECIMALS), confidence, split, baseline)


# p-values keep every digit: at ten seeds a clear difference has p < 5e-5, which four decimals would store as 0
_FOUR_DECIMALS = {"difference_mean": 4, "difference_std": 4, "ci_low": 4, "ci_high": 4}


def _holm_verdicts(comparisons: list[dict], alpha: float) -> None:
    """Adds ``p_holm`` and ``verdict_holm``: Holm's correction over every comparison of the study on the same
    metric (the family a reader scans for a win). A verdict only changes to "no detectable difference"."""
    for metric in dict.fromkeys(row["metric"] for row in comparisons):
        family = [row for row in comparisons if row["metric"] == metric]
        for row, adjusted in zip(family, holm_adjusted([row["p_value"] for row in family])):
            row["p_holm"] = adjusted
            lost = row["verdict"] in ("better", "worse") and not adjusted < alpha
            row["verdict_holm"] = "no detectable difference" if lost else row["verdict"]


def split_label(methods: pd.DataFrame, quantity: str) -> str:
    """``quantity`` named with the split a study table was measured on (``"val mIoU"``); alone for a
    ``study.csv`` written before tables recorded their split."""
    split = str(methods["split"].iloc[0]) if "split" in methods.columns and len(methods) else ""
    return f"{split} {quantity}".strip()


def _earlier(method: str, reference: str, references) -> bool:
    """``method`` is itself a reference listed before ``reference``: the pair is already shown the other way round
    (pixel KD vs baseline, not baseline vs pixel KD)."""
    references = list(references)
    return method in references and references.index(method) < references.index(reference)


def _gap_recovered(method: str, baseline: str, by_seed: dict[str, dict[int, float]], teacher: float,
                   confidence: float) -> dict[str, float]:
    """``(method − baseline) / (teacher − baseline)`` over the seeds both share: the mean paired difference over
    the mean gap. Its interval is Fieller's for that ratio (the baseline's mean in the gap is estimated from the
    same seeds; the teacher is one fixed model): NaN bounds when the teacher's lead over the baseline is not
    clear of the baseline's own seed spread. NaN when the teacher is not above the baseline."""
    nothing = {"gap_recovered": math.nan, "gap_recovered_ci_low": math.nan, "gap_recovered_ci_high": math.nan}
    if baseline not in by_seed or math.isnan(teacher):
        return nothing
    shared = sorted(s for s in by_seed[method] if s in by_seed[baseline])
    if not shared:
        return nothing
    baseline_mean = sum(by_seed[baseline][s] for s in shared) / len(shared)
    if method == baseline:
        return nothing | {"gap_recovered": gap_recovered(baseline_mean, baseline_mean, teacher)}
    differences = [by_seed[method][s] - by_seed[baseline][s] for s in shared]
    point = gap_recovered(baseline_mean + sum(differences) / len(shared), baseline_mean, teacher)
    if math.isnan(point):
        return nothing
    low, high = ratio_interval(differences, [teacher - by_seed[baseline][s] for s in shared], confidence)
    return {"gap_recovered": point, "gap_recovered_ci_low": low, "gap_recovered_ci_high": high,
            "gap_recovered_unbounded": len(shared) > 1 and math.isnan(low)}  # not: one shared seed, no interval


def _number(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


# metrics.json holds numbers only: the verdict as +1 / 0 / −1 (null: one seed or a non-finite difference).
VERDICT_CODES = {"better": 1, "no detectable difference": 0, "worse": -1}


def summary_metrics(summary: StudySummary, transfer_by_method: pd.DataFrame | None = None) -> dict[str, dict]:
    """The headline numbers per method, for ``metrics.json`` (DVC) and MLflow: numbers only (``null`` where a
    single seed gives no interval); shares (``gap_recovered``) as fractions, the report shows them in percent."""
    metrics: dict[str, dict] = {}
    for _, row in summary.methods.iterrows():
        entry = {"seeds": int(row["seeds"])}
        for metric in SUMMARY_METRICS:
            entry |= {f"{metric}_{stat}": _number(row[f"{metric}_{stat}"])
                      for stat in ("mean", "std", "ci_low", "ci_high")}
        if row["role"] == "student":
            entry |= {key: _number(row[key]) for key in ("gap_recovered", "gap_recovered_ci_low",
                                                          "gap_recovered_ci_high")}
        metrics[row["method"]] = entry
    for _, row in summary.comparisons.iterrows():
        key = f"delta_{row['metric']}_vs_{row['reference']}"
        metrics[row["method"]] |= {key: _number(row["difference_mean"]), f"{key}_ci_low": _number(row["ci_low"]),
                                   f"{key}_ci_high": _number(row["ci_high"]),
                                   f"{key}_verdict": VERDICT_CODES.get(row["verdict"]),
                                   f"{key}_p_value": _number(row["p_value"]),
                                   f"{key}_p_holm": _number(row["p_holm"]),
                                   f"{key}_verdict_holm": VERDICT_CODES.get(row["verdict_holm"])}
    if transfer_by_method is not None:
        for _, row in transfer_by_method.iterrows():
            metrics.setdefault(row["method"], {}).update(
                {f"texture_{column[: -len('_mean')]}": _number(row[column])
                 for column in transfer_by_method.columns if column.endswith("_mean")})
    return metrics


def _interval_cell(row, metric: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if math.isnan(std):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f} [{row[f'{metric}_ci_low']:.2f}, {row[f'{metric}_ci_high']:.2f}]"


def _signed_interval(mean: float, low: float, high: float, scale: float = 1.0, unit: str = "") -> str:
    if math.isnan(mean):
        return ""
    if math.isnan(low):
        return f"{scale * mean:+.2f}{unit}"
    return f"{scale * mean:+.2f}{unit} [{scale * low:+.2f}, {scale * high:+.2f}]"


def _family_size(comparisons: pd.DataFrame) -> int:  # Holm's m: the comparisons of a metric with a p-value
    return int(comparisons["p_value"].notna().groupby(comparisons["metric"]).sum().max())


def _survives_holm(row) -> bool:  # comparisons read back from a study_comparisons.csv older than Holm have no column
    return pd.isna(row.get("verdict_holm")) or row["verdict_holm"] == row["verdict"]


def _verdict_word(row) -> str:
    return row["verdict"] if _survives_holm(row) else f"{row['verdict']}, not after Holm"


def _verdict_cell(row) -> str:  # the report's: the console's words, and the p-values that decided them
    return _verdict_word(row) + ("" if _survives_holm(row) else f" (p {row['p_value']:.3f} → {row['p_holm']:.3f})")


def study_markdown(summary: StudySummary) -> str:
    """The study's section of the report: the per-method table with intervals, then the paired verdicts."""
    seeds = summary.seeds
    percent = f"{100 * summary.confidence:g}%"
    lines = [f"## The study over {len(seeds)} seed{'s' if len(seeds) != 1 else ''} "
             f"({', '.join(str(s) for s in seeds)})", ""]
    if len(seeds) < 2:
        lines += ["**One seed: no interval and no verdict can be given.** Methods differ by a seed's noise on this "
                  "data; run several seeds (`study.seeds`) before comparing them.", ""]
    lines += [f"Metrics on the {summary.split} split, in percent: mean ± sample std over seeds "
              f"[{percent} Student-t interval of the mean]. "
              "The teacher is trained once per study (one value). Gap recovered = (method − baseline) / "
              "(teacher − baseline) mIoU, from the paired difference, in percent of the gap (its interval is "
              "Fieller's for a ratio of means over the same seeds; *unbounded* when the teacher's lead is not clear "
              "of the baseline's seed spread; empty when the teacher is not above the baseline).", "",
              "| method | seeds | mIoU | boundary F | gap recovered |", "|---|---|---|---|---|"]
    for _, row in summary.methods.iterrows():
        gap = "" if row["role"] == "teacher" or row["method"] == summary.baseline else _signed_interval(
            row["gap_recovered"], row["gap_recovered_ci_low"], row["gap_recovered_ci_high"], 100, "%")
        unbounded = row.get("gap_recovered_unbounded")
        if gap and pd.notna(unbounded) and bool(unbounded):
            gap += " [unbounded]"
        lines.append(f"| {row['method']} | {row['seeds']} | {_interval_cell(row, 'miou')} | "
                     f"{_interval_cell(row, 'boundary_fscore')} | {gap} |")
    if not summary.comparisons.empty:
        lines += ["", f"### Paired differences ({TEST_NAME}, {percent} interval)", "",
                  "Same seed = same data order, augmentation and initialisation: each method's per-seed difference "
                  "to the reference, averaged. **better** / **worse**: the interval excludes zero; otherwise no "
                  f"detectable difference at this number of seeds. Each verdict is its own {percent} test: among "
                  f"many comparisons, about {100 * (1 - summary.confidence):.3g}% of those with no real difference "
                  "still read better or worse. So each verdict is also tested with Holm's correction over the "
                  f"study's {_family_size(summary.comparisons)} comparisons of the same metric (one family per "
                  "metric): a verdict that does not survive it says so, with its paired-t p-value before and after.",
                  "",
                  "| method | vs | Δ mIoU [CI] | verdict | Δ boundary F [CI] | verdict |", "|---|---|---|---|---|---|"]
        by_pair = summary.comparisons.set_index(["method", "reference", "metric"])
        for method, reference in dict.fromkeys(zip(summary.comparisons["method"],
                                                   summary.comparisons["reference"])):
            cells = []
            for metric in SUMMARY_METRICS:
                row = by_pair.loc[(method, reference, metric)]
                cells += [_signed_interval(row["difference_mean"], row["ci_low"], row["ci_high"]), _verdict_cell(row)]
            lines.append(f"| {method} | {reference} | " + " | ".join(cells) + " |")
    missing = summary.methods.attrs.get("missing_references", [])
    if missing:
        lines += ["", f"Not compared with {', '.join(missing)}: not trained in this study "
                      "(`study.references` names methods of `distillation.run`)."]
    return "\n".join(lines) + "\n"


def study_console_table(methods: pd.DataFrame, comparisons: pd.DataFrame, baseline: str = "baseline") -> list[str]:
    """The study as an aligned plain-text table for the console and log files: per method its mIoU on the split it
    was measured on (mean ± std [interval]), its paired mIoU difference and verdict against each reference,
    and the gap it recovered.
    Takes :class:`StudySummary`'s frames or the same tables read back from ``study.csv`` /
    ``study_comparisons.csv`` (what a finished run prints at its end)."""
    pairs = comparisons[comparisons["metric"] == "miou"] if not comparisons.empty else comparisons
    references = list(dict.fromkeys(pairs["reference"])) if not pairs.empty else []
    rows = [["method", "seeds", split_label(methods, "mIoU"), *(f"vs {reference}" for reference in references), "gap recovered"]]
    for _, row in methods.iterrows():
        student = row["role"] == "student"
        cells = [str(row["method"]), str(int(row["seeds"])) if student else "-", _interval_cell(row, "miou")]
        for reference in references:
            pair = pairs[(pairs["method"] == row["method"]) & (pairs["reference"] == reference)]
            cells.append("" if pair.empty else _signed_interval(pair.iloc[0]["difference_mean"], pair.iloc[0]["ci_low"],
                                                                pair.iloc[0]["ci_high"]) + f" {_verdict_word(pair.iloc[0])}")
        gap = "" if not student or row["method"] == baseline or pd.isna(row.get("gap_recovered")) else \
            f"{100 * row['gap_recovered']:+.0f}%"
        rows.append([*cells, gap])
    widths = [max(len(cells[column]) for cells in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in rows]
    return [lines[0], "  ".join("-" * width for width in widths), *lines[1:]]
