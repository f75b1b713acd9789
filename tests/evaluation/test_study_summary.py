import math

import pandas as pd
import pytest
from scipy import stats

from sstkd.evaluation.plots import plot_study
from sstkd.evaluation.statistics import ratio_interval
from sstkd.evaluation.study_summary import (
    study_console_table,
    study_markdown,
    summarize_study,
    summary_metrics,
)
from sstkd.study import check_method_name, model_name, parse_seeds, split_model_name


def _per_model(values: dict[str, dict[int, float]], teacher: float = 80.0) -> pd.DataFrame:
    rows = [{"model": "teacher", "method": "teacher", "seed": None, "role": "teacher", "miou": teacher,
             "boundary_fscore": teacher / 2}]
    for method, by_seed in values.items():
        rows += [{"model": model_name(method, seed), "method": method, "seed": seed, "role": "student",
                  "miou": miou, "boundary_fscore": miou / 2} for seed, miou in by_seed.items()]
    return pd.DataFrame(rows)


def test_model_names_carry_method_and_seed_and_seeds_parse_from_the_command_line():
    assert split_model_name(model_name("sstkd_structural_only", 12)) == ("sstkd_structural_only", 12)
    assert split_model_name("teacher") == ("teacher", None)
    assert parse_seeds([0, 1, 2]) == parse_seeds("[0+1+2]") == parse_seeds(["0+1", 2]) == [0, 1, 2]
    assert parse_seeds("[4]") == [4]
    for bad, message in (([0, 0], "twice"), ([], "no seed"), (["a"], "not a seed"), ([-1], "not a seed"),
                         (["٣"], "not a seed"), (3, "give a list of seeds"), ("3", r"\[3\] for seed 3 alone")):
        with pytest.raises(ValueError, match=message):
            parse_seeds(bad)
    check_method_name("sstkd_no-border2")
    for bad in ("sstkd.v2", "a.seed_1", "teacher", "with space", ""):
        with pytest.raises(ValueError, match="not allowed"):
            check_method_name(bad)


def test_three_seeds_give_intervals_paired_verdicts_and_the_gap_recovered():
    values = {"baseline": {0: 60.0, 1: 62.0, 2: 61.0}, "pixel_kd": {0: 61.0, 1: 63.5, 2: 61.5},
              "sstkd": {0: 63.0, 1: 65.0, 2: 64.1}}
    summary = summarize_study(_per_model(values), split="test")
    methods = summary.methods.set_index("method")
    t = stats.t.ppf(0.975, 2)
    sstkd = pd.Series(values["sstkd"])
    assert methods.loc["sstkd", "miou_mean"] == pytest.approx(sstkd.mean(), abs=1e-4)
    assert methods.loc["sstkd", "miou_ci_high"] == pytest.approx(sstkd.mean() + t * sstkd.std() / math.sqrt(3), abs=1e-4)
    pairs = summary.comparisons.set_index(["method", "reference", "metric"])
    assert pairs.loc[("sstkd", "baseline", "miou"), "verdict"] == "better"  # +3.0, +3.0, +3.1: tight
    assert pairs.loc[("pixel_kd", "baseline", "miou"), "verdict"] == "no detectable difference"  # +1, +1.5, +0.5
    assert ("baseline", "pixel_kd", "miou") not in pairs.index  # the same pair is shown once
    difference = (sstkd - pd.Series(values["baseline"])).mean()
    assert methods.loc["sstkd", "gap_recovered"] == pytest.approx(difference / (80.0 - 61.0), abs=1e-4)
    assert methods.loc["baseline", "gap_recovered"] == 0.0 and math.isnan(methods.loc["teacher", "miou_std"])
    metrics = summary_metrics(summary)
    assert metrics["sstkd"]["delta_miou_vs_pixel_kd"] == pytest.approx(
        (sstkd - pd.Series(values["pixel_kd"])).mean(), abs=1e-4)
    assert metrics["teacher"]["miou_ci_low"] is None and metrics["sstkd"]["seeds"] == 3
    assert metrics["sstkd"]["delta_miou_vs_baseline_verdict"] == 1  # better, in metrics.json's numbers
    assert metrics["pixel_kd"]["delta_miou_vs_baseline_verdict"] == 0
    baseline = pd.Series(values["baseline"])
    low, high = ratio_interval(list(sstkd - baseline), list(80.0 - baseline))  # Fieller's, on the same seeds
    assert (methods.loc["sstkd", "gap_recovered_ci_low"], methods.loc["sstkd", "gap_recovered_ci_high"]) == \
        pytest.approx((low, high), abs=1e-4)  # the summary keeps four decimals
    assert metrics["sstkd"]["gap_recovered_ci_low"] == pytest.approx(low, abs=1e-4)
    assert "| sstkd | baseline | +3.03 [" in study_markdown(summary)
    table = study_console_table(summary.methods, summary.comparisons)
    header, rule, *rows = table
    assert header.split()[:4] == ["method", "seeds", "test", "mIoU"] and "vs baseline" in header
    assert set(rule) == {"-", " "} and len(rule) >= max(len(line) for line in table) - 1  # aligned columns
    row = next(line for line in rows if line.startswith("sstkd "))
    assert "64.03 ± " in row and "+3.03 [" in row and "better" in row
    column = header.index("vs baseline")
    assert row[column:].startswith("+3.03 [")  # each cell starts under its heading
    assert "Metrics on the test split, in percent" in study_markdown(summary)


def test_a_study_on_another_split_names_it_in_every_table_and_in_study_csv(tmp_path):
    values = {"baseline": {0: 60.0, 1: 62.0}, "sstkd": {0: 63.0, 1: 64.0}}
    summary = summarize_study(_per_model(values), split="val")
    assert summary.split == "val" and set(summary.methods["split"]) == {"val"}
    markdown = study_markdown(summary)
    assert "Metrics on the val split, in percent" in markdown and "test split" not in markdown
    figure = plot_study(_per_model(values), summary.methods)
    assert [ax.get_ylabel() for ax in figure.axes] == ["val mIoU (%)", "val boundary F-score (%)"]
    # the console table of a finished run is printed from study.csv read back: the split travels in the file
    summary.methods.to_csv(tmp_path / "study.csv", index=False)
    read_back = pd.read_csv(tmp_path / "study.csv")
    assert study_console_table(read_back, summary.comparisons)[0].split()[:4] == ["method", "seeds", "val", "mIoU"]
    # a study.csv written before tables recorded their split: no split named rather than a wrong one
    assert study_console_table(read_back.drop(columns="split"), summary.comparisons)[0].split()[:3] == \
        ["method", "seeds", "mIoU"]


def test_one_seed_reports_points_and_says_no_interval_or_verdict_can_be_given():
    summary = summarize_study(_per_model({"baseline": {0: 60.0}, "sstkd": {0: 61.0}}), split="test")
    assert summary.comparisons.iloc[0]["verdict"] == "one seed: no verdict"
    assert math.isnan(summary.methods.set_index("method").loc["sstkd", "miou_ci_low"])
    markdown = study_markdown(summary)
    assert "One seed: no interval and no verdict can be given" in markdown and "| sstkd | 1 | 61.00 |" in markdown
    assert summary_metrics(summary)["sstkd"]["delta_miou_vs_baseline_ci_low"] is None
    assert summary_metrics(summary)["sstkd"]["delta_miou_vs_baseline_verdict"] is None  # no verdict from one seed


def test_a_teacher_inside_the_baselines_seed_spread_gives_a_share_without_bounds():
    # Teacher 63 against a baseline of 58 / 61 / 62: the gap (1.67 on average) is not clear of the baseline's own
    # spread, so any share of it is possible; the report must not print a confident interval.
    summary = summarize_study(_per_model({"baseline": {0: 58.0, 1: 61.0, 2: 62.0},
                                          "sstkd": {0: 59.5, 1: 61.8, 2: 63.1}}, teacher=63.0), split="test")
    sstkd = summary.methods.set_index("method").loc["sstkd"]
    assert sstkd["gap_recovered"] == pytest.approx((61.4667 - 60.3333) / (63.0 - 60.3333), abs=1e-3)
    assert math.isnan(sstkd["gap_recovered_ci_low"]) and math.isnan(sstkd["gap_recovered_ci_high"])
    assert "| +42.50% [unbounded] |" in study_markdown(summary)
    assert summary_metrics(summary)["sstkd"]["gap_recovered_ci_high"] is None
    # A method with three seeds that shares one with the baseline has no interval for lack of seeds, not an
    # unbounded one.
    one_shared = summarize_study(_per_model({"baseline": {0: 60.0}, "sstkd": {0: 62.0, 1: 63.0, 2: 61.0}},
                                            teacher=70.0), split="test")
    assert "| +20.00% |" in study_markdown(one_shared) and "[unbounded]" not in study_markdown(one_shared)


def test_methods_compare_only_on_the_seeds_they_share():
    summary = summarize_study(_per_model({"baseline": {0: 60.0, 1: 61.0, 2: 59.0}, "sstkd": {1: 62.0, 2: 61.0}}),
                              split="test")
    row = summary.comparisons.set_index(["method", "metric"]).loc[("sstkd", "miou")]
    assert row["seeds"] == 2 and row["difference_mean"] == pytest.approx(1.5)


def test_a_teacher_not_above_the_baseline_gives_no_gap_and_missing_references_are_named():
    summary = summarize_study(_per_model({"baseline": {0: 60.0, 1: 62.0}, "sstkd": {0: 63.0, 1: 64.0}},
                                         teacher=55.0), references=("baseline", "pixel_kd"), split="test")
    methods = summary.methods.set_index("method")
    assert math.isnan(methods.loc["sstkd", "gap_recovered"])  # not a sign-flipped share of a negative gap
    assert "Not compared with pixel_kd: not trained in this study" in study_markdown(summary)


def test_a_difference_that_is_not_finite_gets_no_verdict():
    summary = summarize_study(_per_model({"baseline": {0: 60.0, 1: math.nan}, "sstkd": {0: 61.0, 1: 62.0}}),
                              split="test")
    verdicts = set(summary.comparisons["verdict"])
    assert verdicts == {"no verdict (not finite)"}


def test_a_students_own_seed_is_refused_and_a_dotted_method_name_too():
    from sstkd.config import ParameterError
    from sstkd.pipeline_registry import methods_to_run
    from sstkd.pipelines.distillation.nodes import train_student

    student = {"network": {"head": "pspnet", "backbone": "resnet10"}}
    method = {"losses": {"cross_entropy": {}}, "training": {"seed": 7}}
    with pytest.raises(ParameterError, match=r"distillation.methods.baseline.training.seed: .*study.seeds"):
        train_student({}, {}, {}, {}, {"epochs": 1}, student, method, method_name="baseline", seed=0)
    with pytest.raises(ValueError, match="'sstkd.v2' is not allowed"):
        methods_to_run({"distillation": {"run": ["sstkd.v2"], "methods": {"sstkd.v2": {}}}})


def test_another_baseline_name_and_confidence_reach_the_report_and_the_console():
    values = {"student_only": {0: 60.0, 1: 61.0, 2: 59.0}, "sstkd": {0: 63.0, 1: 64.0, 2: 62.5}}
    summary = summarize_study(_per_model(values), references=["student_only"], confidence=0.9,
                              baseline="student_only", split="test")
    header, _, *rows = study_console_table(summary.methods, summary.comparisons, summary.baseline)
    lines = {line.split()[0]: line for line in rows}
    gap_column = header.index("gap recovered")
    assert lines["sstkd"][gap_column:].strip().endswith("%") and lines["student_only"][gap_column:].strip() == ""
    markdown = study_markdown(summary)
    row = next(line for line in markdown.splitlines() if line.startswith("| student_only | 3 | 60.00 ± 1.00 ["))
    assert row.endswith("|  |")  # the baseline recovers no gap of its own
    assert "its own 90% test" in markdown and "about 10% of those" in markdown


def test_a_verdict_that_does_not_survive_holms_correction_says_so_in_the_report():
    # sstkd's lead over the baseline is tight (survives), pixel_kd's is marginal: p 0.02 alone, 0.06 among five
    values = {"baseline": {0: 60.0, 1: 62.0, 2: 61.0, 3: 60.5, 4: 61.5},
              "pixel_kd": {0: 61.2, 1: 62.4, 2: 62.5, 3: 60.8, 4: 62.4},
              "sstkd": {0: 63.0, 1: 65.0, 2: 64.1, 3: 63.4, 4: 64.6},
              "cwd": {0: 60.9, 1: 61.5, 2: 62.2, 3: 60.8, 4: 61.3}}
    summary = summarize_study(_per_model(values), ["baseline", "pixel_kd"], split="test")
    pairs = summary.comparisons.set_index(["method", "reference", "metric"])
    miou = summary.comparisons[summary.comparisons.metric == "miou"]
    raw = {(r.method, r.reference): stats.ttest_rel(pd.Series(values[r.method]), pd.Series(values[r.reference])).pvalue
           for r in miou.itertuples()}
    assert len(raw) == 5  # pixel_kd, sstkd and cwd against the baseline, sstkd and cwd against pixel_kd
    weak = pairs.loc[("pixel_kd", "baseline", "miou")]
    assert weak["verdict"] == "better" and weak["p_value"] == pytest.approx(raw[("pixel_kd", "baseline")], abs=1e-4)
    smallest = sorted(raw.values())
    rank = smallest.index(raw[("pixel_kd", "baseline")])
    expected = max(min(1.0, (5 - k) * p) for k, p in enumerate(smallest[:rank + 1]))
    assert weak["p_holm"] == pytest.approx(expected, abs=1e-4) and expected >= 0.05
    assert weak["verdict_holm"] == "no detectable difference"
    strong = pairs.loc[("sstkd", "baseline", "miou")]
    assert strong["verdict_holm"] == "better" and strong["p_holm"] < 0.05
    assert 0 < strong["p_value"] == pytest.approx(raw[("sstkd", "baseline")], rel=1e-6)  # ~1e-7: not rounded to 0
    markdown = study_markdown(summary)
    assert "Holm's correction over the study's 5 comparisons of the same metric" in markdown
    line = next(row for row in markdown.splitlines() if row.startswith("| pixel_kd | baseline |"))
    assert f"better, not after Holm (p {weak['p_value']:.3f} → {weak['p_holm']:.3f})" in line
    assert "not after Holm" not in next(row for row in markdown.splitlines() if row.startswith("| sstkd | baseline |"))
    console = study_console_table(summary.methods, summary.comparisons)  # the end of a run says so too
    assert "better, not after Holm" in next(line for line in console if line.startswith("pixel_kd "))
    older = summary.comparisons.drop(columns=["p_value", "p_holm", "verdict_holm"])  # a csv from before Holm
    assert "Holm" not in "".join(study_console_table(summary.methods, older))
    metrics = summary_metrics(summary)["pixel_kd"]  # metrics.json (dvc metrics diff) carries both verdicts
    assert (metrics["delta_miou_vs_baseline_verdict"], metrics["delta_miou_vs_baseline_verdict_holm"]) == (1, 0)
    assert metrics["delta_miou_vs_baseline_p_holm"] == pytest.approx(expected, abs=1e-4)
    assert metrics["delta_miou_vs_baseline_p_value"] == pytest.approx(raw[("pixel_kd", "baseline")], rel=1e-6)
