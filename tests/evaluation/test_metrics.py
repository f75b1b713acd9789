import numpy as np
import torch
from torch import nn

from sstkd.evaluation.evaluate import network_cost
from sstkd.evaluation.inference import predict_logits
from sstkd.evaluation.metrics import BoundaryScores, ConfusionMatrix
from sstkd.evaluation.report import report_markdown, report_table
from sstkd.models.segmenter import SegmentationOutput, build_network


def _reference_miou(prediction, target, num_classes):
    ious = []
    for c in range(num_classes):
        valid = target != 255
        inter = ((prediction == c) & (target == c) & valid).sum()
        union = (((prediction == c) | (target == c)) & valid).sum()
        if (target == c).sum() > 0:
            ious.append(inter / union)
    return float(np.mean(ious))


def test_confusion_matrix_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, (3, 20, 20))
    target[0, :5] = 255
    prediction = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, 4, target.shape)) % 4
    matrix = ConfusionMatrix(4)
    matrix.update(torch.from_numpy(prediction), torch.from_numpy(target))
    result = matrix.compute()
    assert abs(result["miou"] - _reference_miou(prediction, target, 4)) < 1e-9
    assert sum(map(sum, result["confusion_matrix"])) == int((target != 255).sum())


def test_perfect_prediction_scores_one_and_a_shift_lowers_boundary_scores():
    target = torch.zeros(1, 40, 40, dtype=torch.long)
    target[:, 10:30, 10:30] = 1
    perfect = BoundaryScores(2, radius=1)
    perfect.update(target.clone(), target)
    assert perfect.compute()["boundary_fscore"] == 1.0 and perfect.compute()["boundary_iou"] == 1.0
    shifted = torch.roll(target, shifts=4, dims=2)
    moved = BoundaryScores(2, radius=1)
    moved.update(shifted, target)
    region = ConfusionMatrix(2)
    region.update(shifted, target)
    assert moved.compute()["boundary_fscore"] < 0.6 < region.compute()["miou"]
    tolerant = BoundaryScores(2, radius=5)
    tolerant.update(shifted, target)
    assert tolerant.compute()["boundary_fscore"] > moved.compute()["boundary_fscore"]


class _PixelwiseNet(nn.Module):
    """A 1x1-conv network: its output at a pixel depends on that pixel only, so windows cannot change it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        logits = self.conv(x)
        return SegmentationOutput(logits, x, x, None)


def test_sliding_window_matches_whole_image_inference():
    net = _PixelwiseNet().eval()
    images = torch.randn(2, 3, 50, 70)
    whole = predict_logits(net, images)
    windowed = predict_logits(net, images, window=(32, 32), overlap=0.25)
    torch.testing.assert_close(windowed, whole, atol=1e-5, rtol=1e-5)
    flipped = predict_logits(net, images, flip=True)
    torch.testing.assert_close(flipped, 2 * whole, atol=1e-5, rtol=1e-5)  # sum of two identical softmaxes


def test_network_cost_counts_params_and_flops():
    network = build_network({"head": "pspnet", "backbone": "resnet10", "head_channels": 16, "output_stride": 16}, 3)
    cost = network_cost(network, 32, 32, runs=1)
    assert abs(cost["params_millions"] - sum(p.numel() for p in network.parameters()) / 1e6) < 1e-9
    assert cost["gflops"] > 0.05 and cost["cpu_latency_ms"] > 0


def test_report_rows_and_deltas():
    def result(role, miou, bf):
        metrics = {"miou": miou, "pixel_accuracy": 0.9, "mean_accuracy": 0.8, "boundary_iou": 0.5,
                   "boundary_fscore": bf, "per_class_iou": [miou, None]}
        cost = {"params_millions": 1.0, "gflops": 2.0, "cpu_latency_ms": 3.0}
        return {"role": role, "architecture": "x", "metrics": metrics, "cost": cost, "best_val_miou": miou}

    results = {"teacher": result("teacher", 0.8, 0.7), "baseline.seed_0": result("student", 0.5, 0.4),
               "baseline.seed_1": result("student", 0.7, 0.4), "sstkd.seed_0": result("student", 0.6, 0.5),
               "sstkd.seed_1": result("student", 0.65, 0.5)}
    table = report_table(results).set_index("model")
    assert table.loc["sstkd.seed_0", "delta_miou"] == 10.0  # over the baseline of the same seed
    assert table.loc["sstkd.seed_1", "delta_miou"] == -5.0
    assert (table.loc["sstkd.seed_1", "method"], table.loc["sstkd.seed_1", "seed"]) == ("sstkd", 1)
    assert np.isnan(table.loc["teacher", "delta_miou"]) and table["seed"].isna()["teacher"]
    markdown = report_markdown(table.reset_index(), results, ["a", "b"], "t")
    assert "| sstkd.seed_0 | student | x | 60.00 | +10.00 |" in markdown
    assert "| a | 80.0 | 60.0 | 62.5 |" in markdown  # per-class IoU: the mean over each method's seeds
    assert "| b | – | – | – |" in markdown
