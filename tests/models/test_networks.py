import shutil

import pytest
import torch
from torchvision.models import resnet18

from sstkd.errors import MissingFileError
from sstkd.models.segmenter import PRESETS, build_network


@pytest.mark.parametrize("config, stride", [
    ({"head": "deeplabv3", "backbone": "resnet18", "output_stride": 8, "head_channels": 32}, 8),
    ({"head": "pspnet", "backbone": "resnet18", "output_stride": 16, "head_channels": 32}, 16),
    ({"head": "pspnet", "backbone": "resnet50", "output_stride": 8, "head_channels": 32}, 8),
    ({"head": "deeplabv3", "backbone": "mobilenetv2", "output_stride": 8, "head_channels": 32, "width_mult": 0.5}, 8),
    ({"head": "pspnet", "backbone": "resnet10", "output_stride": 32, "head_channels": 16}, 32),
])
def test_every_network_returns_the_same_structure(config, stride):
    network = build_network(config, num_classes=5).train()
    out = network(torch.randn(2, 3, 64, 96))
    assert out.logits.shape == (2, 5, 64, 96) and out.aux_logits.shape == (2, 5, 64, 96)
    assert out.low_level.shape[-2:] == (16, 24) and out.low_level.shape[1] == network.low_level_channels
    assert out.high_level.shape[-2:] == (64 // stride, 96 // stride)
    assert network.eval()(torch.randn(1, 3, 64, 96)).aux_logits is None


def test_paper_presets_build():
    for name in ("pspnet_resnet18", "deeplabv3_mobilenetv2"):
        assert build_network(PRESETS[name], 19).num_classes == 19


def test_backbone_weights_load_from_a_local_torchvision_file(tmp_path):
    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    network = build_network({"backbone": "resnet18", "head_channels": 16, "backbone_weights": str(tmp_path / "resnet18.pth")}, 3)
    torch.testing.assert_close(network.backbone.stage1[0].weight, reference.conv1.weight)
    torch.testing.assert_close(network.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_backbone_weights_errors_are_clear(tmp_path):
    with pytest.raises(MissingFileError, match="backbone_weights: no file"):  # short at the CLI, a FileNotFoundError
        build_network({"backbone": "resnet18", "backbone_weights": str(tmp_path / "none.pth")}, 3)
    torch.save(resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="does not match this backbone"):
        build_network({"backbone": "resnet34", "backbone_weights": str(tmp_path / "r18.pth")}, 3)


def test_unknown_network_keys_name_the_key():
    with pytest.raises(ValueError, match="backbone\n  Input should be 'resnet10', 'resnet18'"):
        build_network({"backbone": "vgg16"}, 3)
    with pytest.raises(ValueError, match="heads"):
        build_network({"heads": "pspnet"}, 3)


def test_a_weights_file_enters_the_identity_by_content_not_by_path(tmp_path):
    from sstkd.models.segmenter import NetworkConfig

    weights = resnet18().state_dict()
    torch.save(weights, tmp_path / "a.pt")
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(tmp_path / "a.pt", tmp_path / "elsewhere/b.pt")  # a study's root copied or pulled elsewhere
    weights["fc.bias"] = weights["fc.bias"] + 1e-3
    torch.save(weights, tmp_path / "other.pt")

    def identity(file):
        return NetworkConfig(backbone_weights=str(tmp_path / file)).identity()

    assert identity("a.pt") == identity("elsewhere/b.pt")
    assert identity("a.pt")["backbone_weights"].startswith("sha256:")
    assert identity("other.pt") != identity("a.pt")
    # keywords and a file not there stay as they are
    assert NetworkConfig(backbone_weights="imagenet").identity()["backbone_weights"] == "imagenet"
    assert NetworkConfig(backbone_weights=str(tmp_path / "gone.pt")).identity()["backbone_weights"].endswith("gone.pt")
