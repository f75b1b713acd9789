"""Statistics of a multi-seed study: intervals over seeds and paired comparisons between methods.

Seeds pair the runs: the same seed gives every method the same data order, augmentation and initialisation, so
the difference of two methods *within* a seed removes most of the seed-to-seed spread. The interval of a mean
is Student's t over seeds (no normal approximation: studies have 3 to 10 seeds), the paired comparison is a
paired t interval on the per-seed differences. One seed gives a point and no interval, and says so. The share
of the teacher–baseline gap a method recovers is a ratio of two paired means; its interval is Fieller's. A study
makes many comparisons: Holm's step-down correction says which verdicts survive them all at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _t_survival(t: float, degrees_of_freedom: int) -> float:
    from scipy import stats  # imported late, as in _t_quantile

    return float(stats.t.sf(t, degrees_of_freedom))


def _t_quantile(probability: float, degrees_of_freedom: int) -> float:
    # scipy is imported here, not at the top: this module is on every `kedro` start's import path (the hooks'
    # study table), and scipy.stats is ~0.9 s of that start.
    from scipy import stats

    return float(stats.t.ppf(probability, degrees_of_freedom))


@dataclass(frozen=True)
class Interval:
    """``mean`` of ``n`` values with sample ``std`` and a two-sided ``confidence`` interval ``[low, high]``."""

    mean: float
    std: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        if self.n < 2:
            return f"{self.mean:.2f} (1 seed: no interval)"
        return f"{self.mean:.2f} ± {self.std:.2f} [{self.low:.2f}, {self.high:.2f}]"


def mean_interval(values: list[float], confidence: float = 0.95) -> Interval:
    """Mean, sample standard deviation and Student-t interval of ``values`` (NaN bounds for one value)."""
    if not values:
        raise ValueError("mean_interval needs at least one value")
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, math.nan, n, confidence)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = _t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n, confidence)


@dataclass(frozen=True)
class PairedComparison:
    """``method − reference`` over the seeds both ran: the paired-t interval and what it allows one to say."""

    method: str
    reference: str
    difference: Interval
    seeds: tuple[int, ...]

    @property
    def verdict(self) -> str:
        if self.difference.n < 2:
            return "one seed: no verdict"
        if not (math.isfinite(self.difference.low) and math.isfinite(self.difference.high)):
            return "no verdict (not finite)"
        if self.difference.low > 0:
            return "better"
        if self.difference.high < 0:
            return "worse"
        return "no detectable difference"


def paired_p_value(difference: Interval) -> float:
    """Two-sided paired-t p-value of a mean difference being zero (the test whose interval ``difference`` is);
    NaN for one seed or a non-finite difference."""
    if difference.n < 2 or not (math.isfinite(difference.mean) and math.isfinite(difference.std)):
        return math.nan
    if difference.std == 0:  # every seed moved by the same amount: certain, unless that amount is zero
        return 1.0 if difference.mean == 0 else 0.0
    t = abs(difference.mean) / (difference.std / math.sqrt(difference.n))
    return min(1.0, 2 * _t_survival(t, difference.n - 1))


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the k-th smallest of m is multiplied by m − k + 1
    and never falls below the one before it. A verdict whose adjusted p is below 1 − confidence holds with every
    other comparison of the family made alongside it. NaN stays NaN and does not count towards m."""
    ranked = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for k, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - k) * p))
        adjusted[i] = running
    return adjusted


def paired_comparison(method: str, reference: str, by_seed: dict[str, dict[int, float]],
                      confidence: float = 0.95) -> PairedComparison:
    """Compare ``method`` with ``reference`` on the seeds both have in ``by_seed[name][seed]``."""
    seeds = tuple(sorted(set(by_seed[method]) & set(by_seed[reference])))
    if not seeds:
        raise ValueError(f"{method} and {reference} share no seed: a paired comparison needs the same seeds")
    differences = [by_seed[method][s] - by_seed[reference][s] for s in seeds]
    return PairedComparison(method, reference, mean_interval(differences, confidence), seeds)


MIN_GAP = 0.5  # points of the metric: below it the teacher is not better than the baseline, no share means much


def gap_recovered(method: float, baseline: float, teacher: float) -> float:
    """The share of the teacher–baseline gap a student closes: ``(method − baseline) / (teacher − baseline)``; NaN
    when the teacher is not at least ``MIN_GAP`` above the baseline (the ratio would flip sign or explode)."""
    gap = teacher - baseline
    return math.nan if gap < MIN_GAP else (method - baseline) / gap


def ratio_interval(numerators: list[float], denominators: list[float],
                   confidence: float = 0.95) -> tuple[float, float]:
    """Fieller's interval for ``mean(numerators) / mean(denominators)``, the two measured on the same seeds.

    The set of ratios ``r`` that a paired t test of ``numerator − r · denominator`` (mean zero) does not reject:
    it carries the uncertainty of the denominator and its covariance with the numerator, which dividing the
    numerator's interval by the denominator's mean ignores. NaN bounds when the denominator's mean is itself
    not clear of zero at this confidence (the set is then unbounded) or with fewer than two seeds.
    """
    n = len(numerators)
    if n != len(denominators):
        raise ValueError(f"{n} numerators but {len(denominators)} denominators: a paired ratio needs both per seed")
    if n < 2:
        return math.nan, math.nan
    mean_x, mean_y = sum(numerators) / n, sum(denominators) / n
    var_x = sum((x - mean_x) ** 2 for x in numerators) / (n - 1) / n  # variances of the means
    var_y = sum((y - mean_y) ** 2 for y in denominators) / (n - 1) / n
    cov_xy = sum((x - mean_x) * (y - mean_y) for x, y in zip(numerators, denominators)) / (n - 1) / n
    t2 = _t_quantile(0.5 + confidence / 2, n - 1) ** 2
    # (mean_x − r mean_y)² ≤ t² (var_x − 2 r cov_xy + r² var_y), i.e. a r² + b r + c ≤ 0:
    a = mean_y**2 - t2 * var_y
    b = -2 * (mean_x * mean_y - t2 * cov_xy)
    c = mean_x**2 - t2 * var_x
    if a <= 0:
        return math.nan, math.nan
    root = math.sqrt(max(b * b - 4 * a * c, 0.0))
    return (-b - root) / (2 * a), (-b + root) / (2 * a)
