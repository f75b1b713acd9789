"""The published numbers beside a study's own rows: the table's entries, and what the report computes from them."""

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sstkd.evaluation.published import (
    beside_published,
    parse_published,
    published_markdown,
    published_results,
)
from sstkd.evaluation.study_summary import summarize_study

ROOT = Path(__file__).resolve().parents[2]


def test_every_published_entry_names_a_configured_method_and_plausible_numbers():
    methods = yaml.safe_load((ROOT / "conf/base/parameters_distillation.yml").read_text())["distillation"]["methods"]
    for protocol, entry in published_results().items():
        assert entry["source"] and entry["dataset"], protocol
        for student, rows in entry["students"].items():
            assert parse_published(f"{protocol}:{student}") == (protocol, student)
            for method, value in rows.items():
                assert method in methods, (protocol, student, method)
                assert 10 < value < 90
    with pytest.raises(ValueError, match="unknown published protocol 'cirkd_kitti'; known: sstkd_cityscapes"):
        parse_published("cirkd_kitti:deeplabv3_resnet18")
    with pytest.raises(ValueError, match="publishes no student 'resnet9'; it has deeplabv3_resnet18"):
        parse_published("cirkd_cityscapes:resnet9")


def test_our_rows_sit_beside_the_published_ones_with_their_difference():
    per_model = pd.DataFrame([
        {"model": "teacher", "method": "teacher", "seed": None, "role": "teacher", "miou": 77.0, "boundary_fscore": 50.0},
        *[{"model": f"{m}.seed_{s}", "method": m, "seed": s, "role": "student", "miou": v + s, "boundary_fscore": 40.0}
          for m, v in (("baseline", 73.0), ("cirkd", 75.0)) for s in (0, 1, 2)]])
    summary = summarize_study(per_model, ["baseline"], 0.95, split="test")
    table = beside_published(summary.methods, "cirkd_cityscapes:deeplabv3_resnet18").set_index("method")
    assert table.loc["teacher", "published_miou"] == 78.07 and table.loc["teacher", "our_miou_mean"] == 77.0
    assert table.loc["cirkd", "our_miou_mean"] == pytest.approx(76.0)
    assert table.loc["cirkd", "ours_minus_published"] == pytest.approx(76.0 - 76.38)
    assert table.loc["cirkd", "our_miou_ci_low"] < 76.0 < table.loc["cirkd", "our_miou_ci_high"]
    assert math.isnan(table.loc["ifvd", "our_miou_mean"])  # published, not run here
    markdown = published_markdown(table.reset_index(), "cirkd_cityscapes:deeplabv3_resnet18")
    assert "| cirkd | 76.38 | **76.00** [" in markdown and "| ifvd | 75.59 | **–** | – |" in markdown
    assert "like for like" not in markdown  # images at their own size, as published
    resized = published_markdown(table.reset_index(), "cirkd_cityscapes:deeplabv3_resnet18", (512, 512))
    assert "**Not like for like:** this study's cache resized every image to 512x512" in resized
