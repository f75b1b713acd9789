import math

import numpy as np
import pytest
from scipy import stats

from sstkd.evaluation.statistics import (
    gap_recovered,
    holm_adjusted,
    mean_interval,
    paired_comparison,
    paired_p_value,
    ratio_interval,
)


def test_mean_interval_matches_a_direct_student_t_computation():
    values = [67.75, 68.42, 67.02, 68.9, 67.3]
    interval = mean_interval(values)
    mean, std = np.mean(values), np.std(values, ddof=1)
    t_975_df4 = 2.7764451051977987  # tabulated t quantile, 4 degrees of freedom
    assert interval.mean == pytest.approx(mean) and interval.std == pytest.approx(std)
    assert interval.low == pytest.approx(mean - t_975_df4 * std / math.sqrt(5))
    assert interval.high == pytest.approx(mean + t_975_df4 * std / math.sqrt(5))


def test_one_seed_gives_a_point_and_says_there_is_no_interval():
    interval = mean_interval([68.0])
    assert interval.mean == 68.0 and math.isnan(interval.low) and "no interval" in str(interval)
    assert paired_comparison("a", "b", {"a": {0: 1.0}, "b": {0: 0.5}}).verdict == "one seed: no verdict"


def test_pairing_removes_the_shared_seed_effect():
    # Seeds move both methods together by a lot; the method is always 0.5 better: paired says "better" even
    # though the two unpaired intervals overlap.
    seed_effect = {0: -3.0, 1: 0.0, 2: 3.0, 3: 1.0}
    by_seed = {"baseline": {s: 68 + e for s, e in seed_effect.items()},
               "sstkd": {s: 68.5 + e + 0.01 * s for s, e in seed_effect.items()}}
    comparison = paired_comparison("sstkd", "baseline", by_seed)
    assert comparison.verdict == "better" and comparison.seeds == (0, 1, 2, 3)
    unpaired_sstkd, unpaired_base = mean_interval(list(by_seed["sstkd"].values())), mean_interval(
        list(by_seed["baseline"].values()))
    assert unpaired_sstkd.low < unpaired_base.high  # unpaired, the intervals overlap
    worse = paired_comparison("baseline", "sstkd", by_seed)
    assert worse.verdict == "worse" and worse.difference.mean == pytest.approx(-comparison.difference.mean)
    noisy = {"a": {0: 1.0, 1: -1.0, 2: 0.5}, "b": {0: 0.0, 1: 0.0, 2: 0.0}}
    assert paired_comparison("a", "b", noisy).verdict == "no detectable difference"


def test_only_shared_seeds_are_paired_and_gap_recovered():
    comparison = paired_comparison("a", "b", {"a": {0: 2.0, 1: 3.0, 5: 9.0}, "b": {0: 1.0, 1: 1.0, 7: 0.0}})
    assert comparison.seeds == (0, 1) and comparison.difference.mean == pytest.approx(1.5)
    with pytest.raises(ValueError, match="share no seed"):
        paired_comparison("a", "b", {"a": {0: 1.0}, "b": {1: 1.0}})
    assert gap_recovered(70.0, 68.0, 76.0) == pytest.approx(0.25)
    assert math.isnan(gap_recovered(70.0, 68.0, 68.0))
    assert math.isnan(gap_recovered(70.0, 68.0, 66.0))  # a teacher below the baseline: no share, not −100%


def _paired_t(numerators, denominators, ratio):
    """|t| of the paired test that mean(numerator − ratio · denominator) is zero."""
    residuals = np.asarray(numerators) - ratio * np.asarray(denominators)
    return abs(residuals.mean()) / (residuals.std(ddof=1) / math.sqrt(len(residuals)))


def test_ratio_interval_is_the_set_of_ratios_a_paired_t_test_does_not_reject():
    differences = [1.2, 0.4, 1.9, 0.8, 1.1]  # method − baseline per seed
    gaps = [9.0, 7.5, 10.2, 8.1, 8.8]        # teacher − baseline per seed
    low, high = ratio_interval(differences, gaps)
    t_975_df4 = stats.t.ppf(0.975, 4)
    # Each bound is where the test statistic reaches the quantile; the point estimate lies strictly inside.
    assert _paired_t(differences, gaps, low) == pytest.approx(t_975_df4, rel=1e-6)
    assert _paired_t(differences, gaps, high) == pytest.approx(t_975_df4, rel=1e-6)
    assert low < np.mean(differences) / np.mean(gaps) < high
    assert _paired_t(differences, gaps, low - 0.01) > t_975_df4 > _paired_t(differences, gaps, low + 0.01)


def test_ratio_interval_reduces_to_the_scaled_paired_interval_when_the_gap_does_not_vary():
    differences = [1.2, 0.4, 1.9, 0.8, 1.1]
    low, high = ratio_interval(differences, [8.0] * 5)
    paired = mean_interval(differences)
    assert (low, high) == pytest.approx((paired.low / 8.0, paired.high / 8.0))


def test_ratio_interval_is_unbounded_when_the_gap_is_within_the_baseline_spread():
    # Baseline 58 / 61 / 62 against a teacher of 61: the gap's own interval contains zero, so the share of it
    # a method recovers can be anything (the old "paired interval over the mean gap" printed +39% to +301%).
    baseline, teacher, method = [58.0, 61.0, 62.0], 61.0, [59.5, 61.8, 63.1]
    low, high = ratio_interval([m - b for m, b in zip(method, baseline)], [teacher - b for b in baseline])
    assert math.isnan(low) and math.isnan(high)
    assert all(math.isnan(bound) for bound in ratio_interval([1.0], [2.0]))
    with pytest.raises(ValueError, match="per seed"):
        ratio_interval([1.0, 2.0], [1.0])


def test_ratio_interval_covers_the_true_ratio_at_its_confidence_when_the_baseline_is_noisy():
    # The regime where dividing by the estimated gap misleads: the baseline's seed spread is a large part of the
    # gap. Fieller's interval keeps its 95% coverage; the scaled paired interval does not.
    rng = np.random.default_rng(0)
    true_ratio, teacher, trials, covered, naive_covered = 0.3, 70.0, 2000, 0, 0
    for _ in range(trials):
        baseline = 66.0 + rng.normal(0, 2.0, 5)
        method = baseline + true_ratio * (teacher - 66.0) + rng.normal(0, 0.5, 5) + 0.3 * (baseline - 66.0)
        differences, gaps = method - baseline, teacher - baseline
        low, high = ratio_interval(list(differences), list(gaps))
        covered += low <= true_ratio <= high if not math.isnan(low) else 1  # unbounded covers everything
        paired = mean_interval(list(differences))
        naive_covered += paired.low / gaps.mean() <= true_ratio <= paired.high / gaps.mean()
    assert 0.93 <= covered / trials <= 0.975
    assert naive_covered / trials < 0.90


def test_paired_p_value_is_the_paired_t_test_whose_interval_gives_the_verdict():
    a, b = [63.0, 65.0, 64.1, 62.2], [61.0, 62.0, 61.0, 61.9]
    comparison = paired_comparison("a", "b", {"a": dict(enumerate(a)), "b": dict(enumerate(b))})
    p = paired_p_value(comparison.difference)
    assert p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert (p < 0.05) == (comparison.verdict == "better")
    # the interval's edge is p = 0.05: a difference whose 95% interval just reaches zero
    edge = paired_comparison("a", "b", {"a": {0: 1.0, 1: 2.0, 2: 0.2}, "b": {0: 0.0, 1: 0.0, 2: 0.0}})
    assert (paired_p_value(edge.difference) < 0.05) == (edge.difference.low > 0)
    assert math.isnan(paired_p_value(mean_interval([1.0])))  # one seed: no test
    assert paired_p_value(mean_interval([0.5, 0.5, 0.5])) == 0.0 and paired_p_value(mean_interval([0.0, 0.0])) == 1.0


def test_holm_adjusts_step_down_keeps_the_order_and_skips_nan():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> raised to 0.06 (monotone)
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm_adjusted([0.02, math.nan, 0.5, 0.6])  # three comparisons, not four
    assert adjusted[0] == pytest.approx(0.06) and math.isnan(adjusted[1]) and adjusted[2:] == pytest.approx([1.0, 1.0])
    assert holm_adjusted([0.9, 0.8]) == [1.0, 1.0] and holm_adjusted([]) == []
