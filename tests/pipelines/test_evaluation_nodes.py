import pytest

from sstkd.errors import UserError
from sstkd.pipelines.evaluation.nodes import _mlflow_prefix, _split_of_results


def test_the_report_takes_the_split_its_results_were_measured_on_and_refuses_a_mixture_or_an_unknown():
    assert _split_of_results({"teacher": {"split": "val"}, "baseline.seed_0": {"split": "val"}}) == "val"
    with pytest.raises(UserError, match=r"different splits \(test, val\).*evaluation_results.json: rerun"):
        _split_of_results({"teacher": {"split": "val"}, "baseline.seed_0": {"split": "test"}})
    with pytest.raises(UserError, match=r"results of baseline.seed_0 do not say which split"):
        _split_of_results({"teacher": {"split": "val"}, "baseline.seed_0": {}})


def test_metrics_on_another_split_than_test_never_land_on_a_models_val_miou_training_curve():
    assert _mlflow_prefix("test") == "test"  # test_miou, as `sstkd runs` and the lineage notebook read it
    assert _mlflow_prefix("val") == "eval_val" and _mlflow_prefix("val") + "_miou" != "val_miou"


def test_sstkd_runs_shows_a_models_evaluation_miou_with_its_split():
    from sstkd.audit import evaluated_miou

    assert evaluated_miou({"val_miou": 55.0, "test_miou": 61.2}) == (61.2, "test")
    assert evaluated_miou({"val_miou": 55.0, "eval_val_miou": 58.4, "eval_val_boundary_fscore": 30.0}) == (58.4, "val")
    assert evaluated_miou({"val_miou": 55.0, "eval_val.teacher.miou": 70.0}) is None  # a pipeline run's, not its own
