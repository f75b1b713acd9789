import math

import numpy as np
import pytest

from sstkd.evaluation.statistics import gap_recovered, mean_interval, paired_comparison


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
