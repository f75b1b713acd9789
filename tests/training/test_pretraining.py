import json

import pytest
import torch
from torchvision.models import resnet

from sstkd.catalog.datasets import PretrainedBackbonesDataset
from sstkd.data.texture_corpus import CORPUS_CLASSES, texture_corpus
from sstkd.models.segmenter import build_network
from sstkd.training.loop import poly_decay
from sstkd.training.pretraining import PretrainingConfig, classification_network, pretrain_backbone

CONFIG = PretrainingConfig(epochs=3, batch_size=16, crop_size=28, progress=False)


@pytest.fixture(scope="module")
def corpus():
    return {"train": texture_corpus(0, 4, 32), "val": texture_corpus(0, 1, 32, offset=10_000)}


def test_pretraining_learns_and_is_deterministic(corpus):
    state, history = pretrain_backbone("resnet10", corpus, CONFIG)
    again, _ = pretrain_backbone("resnet10", corpus, CONFIG)
    assert all(torch.equal(value, again[key]) for key, value in state.items())
    assert history[-1]["loss"] < history[0]["loss"]
    assert len(history) == 3 and all(0 <= h["val_accuracy"] <= 1 for h in history)
    assert state["fc.weight"].shape == (len(CORPUS_CLASSES), 512)


@pytest.mark.parametrize("backbone, head_channels", [("resnet10", 16), ("resnet18_deep", 16), ("resnet50", 16)])
def test_the_weights_load_into_the_dilated_segmentation_backbone_of_the_same_name(tmp_path, backbone, head_channels):
    torch.manual_seed(0)
    state = classification_network(backbone, len(CORPUS_CLASSES)).state_dict()
    dataset = PretrainedBackbonesDataset(str(tmp_path / "pretrained"))
    dataset.save({"corpus": {"seed": 0}, "backbones": {backbone: {"state_dict": state, "val_accuracy": 0.5}}})
    record = dataset.load()["backbones"][backbone]
    assert record["file"].startswith(f"{backbone}-") and record["file"].endswith(".pt")
    assert record["sha256"].startswith(record["file"].removeprefix(f"{backbone}-").removesuffix(".pt"))
    network = build_network({"head": "pspnet", "backbone": backbone, "output_stride": 16,
                             "head_channels": head_channels, "backbone_weights": record["path"]}, 5)
    stem = network.backbone.stage1[0]
    stem = stem[0] if isinstance(stem, torch.nn.Sequential) else stem  # the deep stem's first conv
    first_conv = "conv1.0.weight" if backbone.endswith("_deep") else "conv1.weight"
    assert torch.equal(stem.weight, state[first_conv])
    assert torch.equal(network.backbone.layer4[0].conv1.weight, state["layer4.0.conv1.weight"])


def test_the_manifest_records_every_backbone_and_the_folder_is_replaced_whole(tmp_path):
    dataset = PretrainedBackbonesDataset(str(tmp_path / "pretrained"))
    state = classification_network("resnet10", 3).state_dict()
    dataset.save({"corpus": {"seed": 0}, "backbones": {"resnet10": {"state_dict": state}}})
    first = dataset.load()["backbones"]["resnet10"]["file"]
    changed = {key: value + 1 if value.is_floating_point() else value for key, value in state.items()}
    dataset.save({"corpus": {"seed": 0}, "backbones": {"resnet10": {"state_dict": changed}}})
    manifest = json.loads((tmp_path / "pretrained" / "manifest.json").read_text())
    assert manifest["backbones"]["resnet10"]["file"] != first  # other weights, another name
    assert sorted(p.name for p in (tmp_path / "pretrained").iterdir()) == sorted(
        ["manifest.json", manifest["backbones"]["resnet10"]["file"]])
    assert "state_dict" not in manifest["backbones"]["resnet10"]


def test_backbones_that_cannot_be_pretrained_are_refused_by_name():
    with pytest.raises(ValueError, match="mobilenetv2"):
        classification_network("mobilenetv2", 3)


@pytest.mark.parametrize("backbone", ["resnet10", "resnet50"])
def test_zero_initialised_residuals_make_every_block_start_as_the_identity(backbone):
    network = classification_network(backbone, 4, zero_init_residual=True)
    blocks = [m for m in network.modules() if isinstance(m, (resnet.BasicBlock, resnet.Bottleneck))]
    plain = [block.eval() for block in blocks if block.downsample is None]
    assert plain, "no identity-shortcut block to check"
    for block in plain:
        features = torch.rand(2, block.conv1.in_channels, 6, 6)  # a block's input is post-ReLU: non-negative
        torch.testing.assert_close(block(features), features)
    trained = classification_network(backbone, 4)  # the option off: the residual branches contribute
    block = next(b for b in trained.modules() if isinstance(b, (resnet.BasicBlock, resnet.Bottleneck))
                 and b.downsample is None).eval()
    features = torch.rand(2, block.conv1.in_channels, 6, 6)
    assert not torch.allclose(block(features), features)


def test_the_warm_up_rises_linearly_then_the_poly_decay_takes_over():
    factor = poly_decay(100, 1.0, warmup_steps=10)
    assert [round(factor(step), 3) for step in (0, 4, 9)] == [0.1, 0.48, 0.91]  # (step+1)/10 × (1 - step/100)
    assert factor(50) == pytest.approx(0.5) and factor(100) == 0.0
    assert poly_decay(100, 1.0)(0) == 1.0  # no warm-up: the paper's schedule unchanged
