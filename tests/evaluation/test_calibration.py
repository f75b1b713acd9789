import math

import numpy as np
import pytest
import torch

from sstkd.data.sources import IGNORE_INDEX
from sstkd.evaluation.calibration import CalibrationMeter


def _direct_ece(logits: torch.Tensor, labels: torch.Tensor, temperature: float, bins: int) -> tuple[float, float]:
    """ECE and accuracy, pixel by pixel with numpy: the slow reference."""
    probabilities = torch.softmax(logits.double() / temperature, 1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    labels = labels.flatten().numpy()
    keep = labels != IGNORE_INDEX
    probabilities = probabilities.numpy()[keep]
    confidence, prediction = probabilities.max(1), probabilities.argmax(1)
    correct = prediction == labels[keep]
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence >= low) & ((confidence < high) | (high == 1.0))
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return ece, correct.mean()


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_ece_equals_a_direct_computation_and_batches_accumulate(temperature):
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(6, 5, 9, 7, generator=g)
    labels = torch.randint(0, 5, (6, 9, 7), generator=g)
    labels[:, 0] = IGNORE_INDEX
    whole, batched = CalibrationMeter(temperature, bins=10), CalibrationMeter(temperature, bins=10)
    whole.update(logits, labels)
    for index in range(0, 6, 2):
        batched.update(logits[index : index + 2], labels[index : index + 2])
    expected_ece, expected_accuracy = _direct_ece(logits, labels, temperature, 10)
    result = whole.compute()
    assert result["ece"] == pytest.approx(expected_ece, abs=1e-6)  # float32 softmax vs float64
    assert result["accuracy"] == pytest.approx(expected_accuracy)
    assert result["pixels"] == 6 * 8 * 7
    assert batched.compute() == pytest.approx(result)


def test_confident_and_right_is_calibrated_uniform_has_maximal_entropy():
    labels = torch.randint(0, 4, (2, 5, 5))
    confident = CalibrationMeter()
    confident.update(100 * torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float(), labels)
    assert confident.compute()["ece"] == pytest.approx(0, abs=1e-6)
    assert confident.compute()["accuracy"] == 1
    uniform = CalibrationMeter()
    uniform.update(torch.zeros(2, 4, 5, 5), labels)
    assert uniform.compute()["mean_entropy"] == pytest.approx(math.log(4))
    assert uniform.compute()["max_entropy"] == pytest.approx(math.log(4))


def test_a_higher_temperature_softens_and_no_valid_pixel_is_an_error():
    logits, labels = 2 * torch.randn(1, 6, 8, 8), torch.randint(0, 6, (1, 8, 8))
    cold, warm = CalibrationMeter(1.0), CalibrationMeter(4.0)
    cold.update(logits, labels)
    warm.update(logits, labels)
    assert warm.compute()["mean_entropy"] > cold.compute()["mean_entropy"]
    assert warm.compute()["mean_confidence"] < cold.compute()["mean_confidence"]
    assert warm.compute()["accuracy"] == cold.compute()["accuracy"]  # the argmax does not move
    empty = CalibrationMeter()
    empty.update(logits, torch.full((1, 8, 8), IGNORE_INDEX))
    with pytest.raises(ValueError, match="no valid pixel"):
        empty.compute()
