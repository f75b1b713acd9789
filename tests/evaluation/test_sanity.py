import math

import pandas as pd
import pytest
from scipy import stats

from sstkd.evaluation.sanity import (
    FAIL,
    NOT_MEASURED,
    PASS,
    SanityConfig,
    last_quarter_gain,
    sanity_checks,
    sanity_markdown,
)
from sstkd.evaluation.study_summary import summarize_study
from sstkd.study import model_name

BASELINE = {0: 60.0, 1: 62.0, 2: 61.0}
CURVES = {0: [0.2, 0.4, 0.5, 0.55, 0.58, 0.595, 0.6, 0.6], 1: [0.3, 0.5, 0.55, 0.6, 0.6, 0.615, 0.62, 0.618],
          2: [0.1, 0.3, 0.5, 0.56, 0.59, 0.6, 0.602, 0.604]}
# pixel KD's curves and probes differ from the baseline's: a check that read every student, or pixel KD's, would
# give other values than the baseline's direct computation below
KD_CURVES = {seed: [0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.6, 0.7] for seed in CURVES}
PROBE = {"baseline": 80.0, "pixel_kd": 70.0}


def _study(pixel_kd: dict[int, float], teacher: float = 75.0, teacher_probe: float = 84.0):
    rows = [{"model": "teacher", "method": "teacher", "seed": None, "role": "teacher", "miou": teacher,
             "boundary_fscore": 30.0}]
    results = {"teacher": {"val_miou_curve": [0.7]}}
    probes = [{"model": "teacher", "probe_accuracy": teacher_probe}]
    for method, by_seed in (("baseline", BASELINE), ("pixel_kd", pixel_kd)):
        for seed, miou in by_seed.items():
            name = model_name(method, seed)
            rows.append({"model": name, "method": method, "seed": seed, "role": "student", "miou": miou,
                         "boundary_fscore": miou / 2})
            results[name] = {"val_miou_curve": (CURVES if method == "baseline" else KD_CURVES)[seed]}
            probes.append({"model": name, "probe_accuracy": PROBE[method] + seed})
    per_model = pd.DataFrame(rows)
    return per_model, results, pd.DataFrame(probes), summarize_study(per_model, ["baseline"], split="test")


def test_each_check_equals_its_direct_computation():
    per_model, results, probes, summary = _study({0: 61.0, 1: 63.5, 2: 61.5})
    checks = {c.check: c for c in sanity_checks(per_model, results, probes, summary, SanityConfig())}
    # convergence: best of the last ceil(8/4) = 2 epochs minus the best of the 6 before them, in points
    assert checks["students converge"].value == pytest.approx((0.5 + 0.5 + 0.4) / 3)  # by hand, from CURVES
    assert checks["students converge"].status == PASS
    assert checks["teacher above the baseline"].value == pytest.approx(75.0 - 61.0)
    assert "baseline test mIoU" in checks["teacher above the baseline"].threshold  # the split it was measured on
    assert checks["teacher's stage 1 holds more texture"].value == pytest.approx(84.0 - 81.0)
    differences = [61.0 - 60.0, 63.5 - 62.0, 61.5 - 61.0]
    low = sum(differences) / 3 - stats.t.ppf(0.975, 2) * stats.tstd(differences) / math.sqrt(3)
    kd = checks["pixel_kd not worse than baseline"]
    assert kd.value == pytest.approx(1.0) and kd.status == PASS and f"{low:+.2f}" in kd.detail
    assert all(c.status == PASS for c in checks.values())
    assert "Every check passes." in sanity_markdown(list(checks.values()))


def test_a_study_on_the_validation_split_says_so_in_its_margin_check():
    per_model, results, probes, _ = _study({0: 61.0, 1: 63.5, 2: 61.5})
    summary = summarize_study(per_model, ["baseline"], split="val")
    margin = next(c for c in sanity_checks(per_model, results, probes, summary, SanityConfig())
                  if c.key == "teacher_margin")
    assert "baseline val mIoU" in margin.threshold and "test" not in margin.threshold


def test_failures_are_named_first_and_missing_evidence_is_never_a_pass():
    per_model, results, probes, summary = _study({0: 50.0, 1: 51.5, 2: 49.0}, teacher=66.0, teacher_probe=81.5)
    strict = SanityConfig(max_last_quarter_gain=0.3)
    checks = {c.check: c for c in sanity_checks(per_model, results, probes, summary, strict)}
    assert checks["students converge"].status == FAIL
    assert checks["teacher above the baseline"].status == FAIL  # 66 - 61 = 5 < 8
    assert checks["teacher's stage 1 holds more texture"].status == FAIL  # 81.5 - 81 < 2
    assert checks["pixel_kd not worse than baseline"].status == FAIL  # -10.83, interval below 0
    text = sanity_markdown(list(checks.values()))
    assert text.index("**Failed:") < text.index("| check |")
    assert "pixel_kd not worse than baseline" in text.split("| check |")[0]
    for model in results:
        results[model]["val_miou_curve"] = None  # models trained before curves were recorded
    unmeasured = sanity_checks(per_model, results, probes.iloc[:0], summary, SanityConfig(kd_method="cwd"))
    assert [c.status for c in unmeasured if c.check != "teacher above the baseline"] == [NOT_MEASURED] * 3
    # a failed check beside unmeasured ones: the reader is told of both, above the table
    head = sanity_markdown(unmeasured).split("| check |")[0]
    assert "**Failed: teacher above the baseline." in head
    assert "Not measured: students converge; teacher's stage 1 holds more texture; cwd not worse than baseline." in head


def test_last_quarter_gain_of_rising_noisy_flat_and_short_curves():
    assert last_quarter_gain([0.5, 0.5, 0.5, 0.5]) == 0.0
    assert last_quarter_gain([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(20.0)  # ceil(5/4) = 2: .5 - .3
    # converged but noisy (an epoch dips just before the last quarter): no gain, not the rebound from the dip
    assert last_quarter_gain([0.5, 0.6, 0.62, 0.6, 0.55, 0.61, 0.62, 0.615]) == pytest.approx(0.0)
    assert last_quarter_gain([0.6, 0.62, 0.61, 0.55]) < 0  # the last quarter is worse than the best before it
    assert math.isnan(last_quarter_gain([0.5]))


def test_a_protocols_note_on_its_thresholds_comes_before_the_table():
    per_model, results, probes, summary = _study({0: 61.0, 1: 63.5, 2: 61.5}, teacher=66.0)
    relaxed = SanityConfig(min_teacher_margin=4.0, note="The margin is 4,\n  not 8: see the README.")
    checks = sanity_checks(per_model, results, probes, summary, relaxed)
    assert next(c for c in checks if c.key == "teacher_margin").status == PASS  # 66 - 61 = 5 >= 4
    text = sanity_markdown(checks, relaxed.note)
    assert "The margin is 4, not 8: see the README." in text  # one paragraph, whatever the YAML's line breaks
    assert text.index("The margin is 4") < text.index("| check |")
    assert "README" not in sanity_markdown(checks)
    # the table itself says which threshold departs from the default, whatever the note says
    thresholds = {c.key: c.threshold for c in checks}
    assert thresholds["teacher_margin"].endswith("mIoU ≥ 4 (default 8)")
    assert "default" not in thresholds["convergence"] + thresholds["teacher_probe_margin"]
    strict = sanity_checks(per_model, results, probes, summary, SanityConfig(max_last_quarter_gain=0.5))
    assert next(c for c in strict if c.key == "convergence").threshold.endswith("< 0.5 (default 1)")


def test_a_failed_check_is_announced_before_the_protocols_note():
    per_model, results, probes, summary = _study({0: 61.0, 1: 63.5, 2: 61.5}, teacher=64.0)
    config = SanityConfig(min_teacher_margin=4.0, note="Why the margin is 4.")
    text = sanity_markdown(sanity_checks(per_model, results, probes, summary, config), config.note)
    assert text.index("**Failed: teacher above the baseline.") < text.index("Why the margin is 4.") \
        < text.index("| check |")


def test_the_teachers_probe_lead_is_measured_at_the_students_width():
    per_model, results, probes, summary = _study({0: 61.0, 1: 63.5, 2: 61.5}, teacher_probe=84.0)
    # 256 teacher channels probe 3 points above the baseline; narrowed to the baseline's 64, only 1.5
    probes["channels"] = [256] + [64] * (len(probes) - 1)
    probes["probe_width"] = 64
    probes["probe_accuracy_at_width"] = [82.5] + list(probes["probe_accuracy"].iloc[1:])
    check = next(c for c in sanity_checks(per_model, results, probes, summary, SanityConfig())
                 if c.key == "teacher_probe_margin")
    assert check.value == pytest.approx(82.5 - 81.0) and check.status == FAIL
    assert "at the same width" in check.threshold
    assert check.detail == ("teacher 82.50%, baseline 81.00%, probed at 64 channels (the teacher on its leading "
                            "principal components; 84.00% on all 256)")


def test_results_from_before_the_width_matched_probe_fall_back_to_the_full_probe_and_say_so():
    from sstkd.evaluation.report import transfer_table

    per_model, results, _, summary = _study({0: 61.0, 1: 63.5, 2: 61.5})
    old = {model: {"channels": 256 if model == "teacher" else 64, "profile_l1": 0.0, "intensity_l1": 0.0,
                   "histogram_w1": 0.0, "cka": 1.0, "probe_miou": 0.5, "per_quantization": {},
                   "probe_accuracy": (84.0 if model == "teacher" else 80.0) / 100}  # no probe at width
           for model in results}
    table = transfer_table(old)  # the path the pipeline takes: the column is there, empty
    assert table["probe_accuracy_at_width"].isna().all()
    check = next(c for c in sanity_checks(per_model, results, table, summary, SanityConfig())
                 if c.key == "teacher_probe_margin")
    assert check.value == pytest.approx(4.0) and check.status == PASS
    assert "widths not matched" in check.detail and "same width" not in check.threshold
