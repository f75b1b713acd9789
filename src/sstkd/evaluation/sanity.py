"""Sanity checks a study must pass before its verdicts mean anything, shown first in its report.

A comparison of distillation methods is only a study of distillation when
* the **students converge**: the baseline's validation mIoU gains less than ``max_last_quarter_gain`` points over
  the last quarter of its schedule (the best epoch of the last quarter over the best before it, mean over seeds);
* the **teacher is worth distilling**: its mIoU (on the evaluation split) is at least ``min_teacher_margin`` points
  above the baseline's mean, and its stage-1 linear probe at least ``min_probe_margin`` points above the
  baseline's (texture knowledge the student lacks), both probed at the same width (the teacher on its leading
  principal components, :func:`~sstkd.evaluation.texture_transfer.leading_components`), so that its lead is not
  its wider stage 1 alone;
* the **most reliable published result holds**: plain pixel KD (``kd_method``) is not detectably worse than the
  baseline (paired over seeds), as in every published table.
A check that cannot be computed (no such row, one seed, no recorded curve) is "not measured", never a pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from sstkd.evaluation.study_summary import StudySummary

PASS, FAIL, NOT_MEASURED = "pass", "FAIL", "not measured"


class SanityConfig(BaseModel):
    """``study.sanity``: the thresholds of the checks (points of mIoU or of probe accuracy, in percent)."""

    model_config = ConfigDict(extra="forbid")
    max_last_quarter_gain: float = Field(1.0, ge=0)
    min_teacher_margin: float = 8.0
    min_probe_margin: float = 2.0
    kd_method: str = "pixel_kd"
    # why the thresholds are what they are, where a protocol departs from the defaults: the report prints it
    # above the table, so a reader meets the reason with the verdict
    note: str = ""


@dataclass(frozen=True)
class SanityCheck:
    key: str  # a name MLflow accepts as a tag (`sanity.<key>`)
    check: str
    value: float
    threshold: str
    status: str
    detail: str


def last_quarter_gain(curve: list[float]) -> float:
    """Points of mIoU (``curve`` in fractions) that the last quarter of a schedule added to the best model: the
    best of the last ⌈n/4⌉ epochs minus the best before them (what best-model selection gained by training that
    long; a noisy but flat curve gains nothing). NaN for a curve too short to have epochs before its last quarter.
    Epochs that were not validated (``None``, ``training.validate_every``) are skipped, the quarter still counted
    in epochs."""
    quarter = math.ceil(len(curve) / 4)
    if len(curve) < 2 or quarter >= len(curve):
        return math.nan
    last, before = ([v for v in part if v is not None] for part in (curve[-quarter:], curve[:-quarter]))
    if not last or not before:  # training.validate_every left one side without a validated epoch
        return math.nan
    return 100 * (max(last) - max(before))


def _departure(config: SanityConfig, key: str) -> str:
    """Where a protocol sets a threshold other than the default, e.g. " (default 8)": the table itself says so."""
    default = SanityConfig.model_fields[key].default
    return "" if getattr(config, key) == default else f" (default {default:g})"


def _status(passed: bool | None) -> str:
    return NOT_MEASURED if passed is None else PASS if passed else FAIL


def sanity_checks(per_model: pd.DataFrame, results: dict[str, dict], transfer: pd.DataFrame, summary: StudySummary,
                  config: SanityConfig) -> list[SanityCheck]:
    """The checks of the module docstring. ``per_model``: :func:`~sstkd.evaluation.report.report_table` (percent);
    ``results``: the evaluation results (each model's ``val_miou_curve``); ``transfer``: the texture-transfer table
    (``probe_accuracy`` in percent); ``summary``: the study's paired comparisons."""
    baseline = summary.baseline
    students = per_model[(per_model["role"] == "student") & (per_model["method"] == baseline)]
    teachers = per_model[per_model["role"] == "teacher"]
    checks = []

    curves = [results[model].get("val_miou_curve") for model in students["model"]]
    recorded = [curve for curve in curves if curve]
    gains = [gain for gain in map(last_quarter_gain, recorded) if not math.isnan(gain)]
    gain = sum(gains) / len(gains) if gains else math.nan
    if gains:
        detail = f"mean over {len(gains)} seed(s); per seed " + ", ".join(f"{g:+.2f}" for g in gains)
    elif recorded:
        detail = f"{baseline} trained {max(map(len, recorded))} epoch(s): too few to have a last quarter"
    else:
        detail = f"no recorded validation curve of {baseline} (no {baseline} row, or models trained before curves were kept)"
    checks.append(SanityCheck(
        "convergence", "students converge", gain,
        f"{baseline}'s val mIoU gain over the last quarter < {config.max_last_quarter_gain:g}"
        f"{_departure(config, 'max_last_quarter_gain')}",
        _status(None if not gains else gain < config.max_last_quarter_gain), detail))

    baseline_miou = float(students["miou"].mean()) if len(students) else math.nan
    teacher_miou = float(teachers["miou"].iloc[0]) if len(teachers) else math.nan
    margin = teacher_miou - baseline_miou
    checks.append(SanityCheck(
        "teacher_margin", "teacher above the baseline", margin,
        f"teacher − {baseline} {summary.split} mIoU ≥ {config.min_teacher_margin:g}"
        f"{_departure(config, 'min_teacher_margin')}",
        _status(None if math.isnan(margin) else margin >= config.min_teacher_margin),
        f"teacher {teacher_miou:.2f}, {baseline} {baseline_miou:.2f} (mean over {len(students)} seed(s))"
        if not math.isnan(margin) else f"no teacher or no {baseline} row"))

    probes = transfer.set_index("model") if not transfer.empty else pd.DataFrame()
    compared = ["teacher", *(model for model in students["model"] if model in probes.index)]

    def measured(column: str) -> bool:  # for the teacher and at least one baseline seed, every one of them
        return column in probes and "teacher" in probes.index and len(compared) > 1 \
            and bool(probes.loc[compared, column].notna().all())

    # results written before the width-matched probe have none: the full probe then, and the detail says so
    matched = measured("probe_accuracy_at_width")
    column = "probe_accuracy_at_width" if matched else "probe_accuracy"
    probe_margin = math.nan
    if measured(column):
        teacher, baselines = probes.loc["teacher"], probes.loc[compared[1:]]
        teacher_probe, baseline_probe = float(teacher[column]), float(baselines[column].mean())
        probe_margin = teacher_probe - baseline_probe
        detail = f"teacher {teacher_probe:.2f}%, {baseline} {baseline_probe:.2f}%"
        if matched:
            width = int(teacher["probe_width"])
            detail += f", probed at {width} channels"
            if teacher["channels"] > width:
                detail += (f" (the teacher on its leading principal components; {teacher['probe_accuracy']:.2f}% "
                           f"on all {int(teacher['channels'])})")
            if (baselines["channels"] > width).any():
                detail += f" ({baseline} on its leading principal components)"
        else:
            detail += " (results written before the width-matched probe: widths not matched)"
    else:
        detail = "no texture-transfer probe of the teacher or the baseline"
    checks.append(SanityCheck(
        "teacher_probe_margin", "teacher's stage 1 holds more texture", probe_margin,
        f"teacher − {baseline} stage-1 probe accuracy{' at the same width' if matched else ''} ≥ "
        f"{config.min_probe_margin:g}{_departure(config, 'min_probe_margin')}",
        _status(None if math.isnan(probe_margin) else probe_margin >= config.min_probe_margin), detail))

    pairs = summary.comparisons
    pair = pairs[(pairs["method"] == config.kd_method) & (pairs["reference"] == baseline) & (pairs["metric"] == "miou")]
    if pair.empty or math.isnan(float(pair["ci_low"].iloc[0])):
        difference = float(pair["difference_mean"].iloc[0]) if not pair.empty else math.nan
        checks.append(SanityCheck(
            "kd_not_worse", f"{config.kd_method} not worse than {baseline}", difference, "paired interval not below 0",
            NOT_MEASURED, f"no {config.kd_method} row" if pair.empty else "one shared seed: no interval"))
    else:
        row = pair.iloc[0]
        checks.append(SanityCheck(
            "kd_not_worse", f"{config.kd_method} not worse than {baseline}", float(row["difference_mean"]),
            "paired interval not below 0", _status(row["verdict"] != "worse"),
            f"Δ mIoU {row['difference_mean']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}], {row['verdict']} "
            f"({int(row['seeds'])} seeds)"))
    return checks


def sanity_markdown(checks: list[SanityCheck], note: str = "") -> str:
    """The report's first section: a warning above the verdicts when a check fails, the checks that could not be
    measured, the protocol's ``note`` on its thresholds, then the checks."""
    failed = [c.check for c in checks if c.status == FAIL]
    unmeasured = [c.check for c in checks if c.status == NOT_MEASURED]
    lines = ["## Sanity checks (before any verdict)", ""]
    if failed:
        lines += [f"**Failed: {'; '.join(failed)}. The verdicts below describe this regime, not distillation in "
                  "general: read them with that in mind.**", ""]
    if unmeasured:
        lines += [f"Not measured: {'; '.join(unmeasured)}.", ""]
    if not failed and not unmeasured:
        lines += ["Every check passes.", ""]
    if note.strip():
        lines += [" ".join(note.split()), ""]
    lines += ["| check | value | threshold | status | detail |", "|---|---|---|---|---|"]
    for check in checks:
        value = "" if math.isnan(check.value) else f"{check.value:+.2f}"
        lines.append(f"| {check.check} | {value} | {check.threshold} | {check.status} | {check.detail} |")
    return "\n".join(lines) + "\n"
