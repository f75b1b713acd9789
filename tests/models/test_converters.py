"""Weights users already have: torchvision's ImageNet files through the hub cache, the KD codebases' deep-stem
ImageNet files, and teachers converted from torchvision's and CIRKD's state-dict layouts."""

import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet18
from torchvision.models.segmentation import deeplabv3_resnet50, fcn_resnet50

from sstkd.data.sources import VOC_CLASSES
from sstkd.models.converters import CAFFE_BGR_MEAN, IMAGENET_MEAN, IMAGENET_STD, convert_teacher
from sstkd.models.segmenter import build_network
from sstkd.training.recipe import check_model_matches_data, network_from_payload

DATA_STATS = {"mean": [0.31, 0.52, 0.44], "std": [0.21, 0.17, 0.26]}


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache under tmp_path, and no network: any download attempt fails as it does here."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    attempts = []

    def no_network(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints", attempts


def test_imagenet_weights_fail_at_once_offline_naming_the_file_and_where_to_put_it(offline_hub):
    folder, attempts = offline_hub
    with pytest.raises(FileNotFoundError) as error:
        build_network({"backbone": "resnet18", "backbone_weights": "imagenet"}, 3)
    message = str(error.value)
    assert "resnet18-f37072fd.pth" in message and str(folder / "resnet18-f37072fd.pth") in message
    assert "TORCH_HOME" in message and len(attempts) == 1
    with pytest.raises(ValueError, match="publishes no ImageNet weights for 'resnet10'"):
        build_network({"backbone": "resnet10", "backbone_weights": "imagenet"}, 3)
    with pytest.raises(ValueError, match="no deep-stem weights.*resnet18-imagenet.pth"):
        build_network({"backbone": "resnet18_deep", "backbone_weights": "imagenet"}, 3)
    assert len(attempts) == 1  # neither of those tried to download


def test_imagenet_weights_load_from_a_torchvision_file_in_the_hub_cache(offline_hub):
    folder, attempts = offline_hub
    folder.mkdir(parents=True)
    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), folder / "resnet18-f37072fd.pth")
    network = build_network({"backbone": "resnet18", "head_channels": 16, "backbone_weights": "imagenet"}, 3)
    torch.testing.assert_close(network.backbone.stage1[0].weight, reference.conv1.weight)
    torch.testing.assert_close(network.backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert attempts == []


def _deep_stem_imagenet_file():
    """A ResNet-18 in the CSAIL / CIRKD ``resnet18-imagenet.pth`` layout: flat stem conv1/bn1/conv2/bn2/conv3/bn3
    (64, 64, 128 channels), layer 1 taking 128 channels (so its first block has a downsample), fc."""
    g = torch.Generator().manual_seed(0)

    def bn(prefix, n):
        return {f"{prefix}.weight": torch.rand(n, generator=g) + 0.5, f"{prefix}.bias": torch.randn(n, generator=g),
                f"{prefix}.running_mean": torch.randn(n, generator=g),
                f"{prefix}.running_var": torch.rand(n, generator=g) + 0.5,
                f"{prefix}.num_batches_tracked": torch.tensor(7)}

    state = {"conv1.weight": torch.randn(64, 3, 3, 3, generator=g), **bn("bn1", 64),
             "conv2.weight": torch.randn(64, 64, 3, 3, generator=g), **bn("bn2", 64),
             "conv3.weight": torch.randn(128, 64, 3, 3, generator=g), **bn("bn3", 128),
             "layer1.0.conv1.weight": torch.randn(64, 128, 3, 3, generator=g), **bn("layer1.0.bn1", 64),
             "layer1.0.downsample.0.weight": torch.randn(64, 128, 1, 1, generator=g), **bn("layer1.0.downsample.1", 64)}
    tv = resnet18(weights=None).state_dict()  # the rest of the blocks have torchvision's names and shapes
    state |= {k: torch.randn(v.shape, generator=g) if v.is_floating_point() else v
              for k, v in tv.items() if not k.startswith(("conv1.", "bn1.")) and k not in state}
    return state


def _stem(x, state, prefix=""):
    def bn(y, name):
        return F.batch_norm(y, state[f"{prefix}{name}.running_mean"], state[f"{prefix}{name}.running_var"],
                            state[f"{prefix}{name}.weight"], state[f"{prefix}{name}.bias"])
    y = F.relu(bn(F.conv2d(x, state[f"{prefix}conv1.weight"], stride=2, padding=1), "bn1"))
    y = F.relu(bn(F.conv2d(y, state[f"{prefix}conv2.weight"], padding=1), "bn2"))
    y = F.relu(bn(F.conv2d(y, state[f"{prefix}conv3.weight"], padding=1), "bn3"))
    return F.max_pool2d(y, 3, stride=2, padding=1)


def test_the_deep_stem_resnet_loads_the_kd_codebases_imagenet_file(tmp_path):
    state = _deep_stem_imagenet_file()
    # saved before PyTorch 0.4.1, as those files were: no BatchNorm counters
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
               tmp_path / "resnet18-imagenet.pth")
    network = build_network({"backbone": "resnet18_deep", "head_channels": 16,
                             "backbone_weights": str(tmp_path / "resnet18-imagenet.pth")}, 3).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(network.backbone.stage1[:4](x), _stem(x, state))
    torch.testing.assert_close(network.backbone.stage1[4][0].downsample[0].weight, state["layer1.0.downsample.0.weight"])
    torch.testing.assert_close(network.backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    with pytest.raises(ValueError, match="does not match this backbone"):  # a 7×7-stem file is not a deep stem
        torch.save(resnet18(weights=None).state_dict(), tmp_path / "plain.pth")
        build_network({"backbone": "resnet18_deep", "backbone_weights": str(tmp_path / "plain.pth")}, 3)


def _randomise_batchnorm(model):
    g = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=g) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)


VOC_INFO = {"classes": list(VOC_CLASSES), "num_classes": 21}


def _torchvision_teacher(builder, config, path, seed):
    """A torchvision segmentation model (random weights and BN statistics) saved to ``path``, and its conversion."""
    torch.manual_seed(seed)
    reference = builder(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).eval()
    with torch.no_grad():
        _randomise_batchnorm(reference)
    torch.save(reference.state_dict(), path)
    return reference, convert_teacher(path, "torchvision", config, VOC_INFO, DATA_STATS)


def _assert_predicts_like(network, reference, size):
    """Both on the same RGB image, each through its own input normalisation."""
    rgb = torch.rand(1, 3, *size)
    ours = (rgb - torch.tensor(DATA_STATS["mean"]).view(3, 1, 1)) / torch.tensor(DATA_STATS["std"]).view(3, 1, 1)
    theirs = (rgb - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(network.eval()(ours).logits, reference(theirs)["out"], atol=2e-4, rtol=1e-4)


def test_a_torchvision_deeplabv3_converts_and_predicts_what_torchvision_predicts(tmp_path):
    network_config = {"head": "deeplabv3", "backbone": "resnet50", "output_stride": 8, "head_channels": 256}
    file = tmp_path / "deeplabv3_resnet50_coco.pth"
    reference, payload = _torchvision_teacher(deeplabv3_resnet50, network_config, file, seed=0)
    check_model_matches_data(payload, VOC_INFO, "teacher")
    _assert_predicts_like(network_from_payload(payload), reference, (40, 56))
    with pytest.raises(ValueError, match="predicts 21 classes, the data has 19"):
        check_model_matches_data(payload, {"classes": [str(i) for i in range(19)], "num_classes": 19}, "teacher")
    with pytest.raises(ValueError, match="does not fit teacher.network"):
        convert_teacher(file, "torchvision", network_config | {"backbone": "resnet101"}, VOC_INFO, DATA_STATS)
    with pytest.raises(ValueError, match="deeplabv3 or fcn at output stride 8; teacher.network has head 'deeplabv3', output_stride 16"):
        convert_teacher(file, "torchvision", network_config | {"output_stride": 16}, VOC_INFO, DATA_STATS)
    torch.save({"classifier.0.weight": torch.zeros(8, 16, 3, 3)}, tmp_path / "fcn.pth")
    with pytest.raises(ValueError, match="the file has an FCN head, teacher.network a deeplabv3 head; set "
                                         "teacher.network.head to fcn"):
        convert_teacher(tmp_path / "fcn.pth", "torchvision", network_config, VOC_INFO, DATA_STATS)
    # Students record their teacher's fingerprint: another file is another teacher
    with torch.no_grad():
        reference.classifier[4].bias.add_(1.0)
    torch.save(reference.state_dict(), tmp_path / "other.pth")
    other = convert_teacher(tmp_path / "other.pth", "torchvision", network_config, VOC_INFO, DATA_STATS)
    assert payload["fingerprint"] and other["fingerprint"] != payload["fingerprint"]
    assert convert_teacher(file, "torchvision", network_config, VOC_INFO, DATA_STATS)["fingerprint"] == payload["fingerprint"]


def test_a_torchvision_fcn_converts_and_predicts_what_torchvision_predicts(tmp_path):
    config = {"head": "fcn", "backbone": "resnet50", "output_stride": 8, "head_channels": 512}
    reference, payload = _torchvision_teacher(fcn_resnet50, config, tmp_path / "fcn_resnet50_coco.pth", seed=1)
    _assert_predicts_like(network_from_payload(payload), reference, (40, 48))


def _cirkd_deeplabv3_resnet18(num_classes):
    """CIRKD's DeepLabV3-ResNet18 state dict (winycg/CIRKD 2d8ad0f, models/deeplabv3.py + base_models): backbone
    under ``pretrained.`` with the deep stem, head width 128 for a 512-channel backbone, ASPP branches b0..b4,
    ``head.block.{0,1,4}``, aux ``auxlayer.block.{0,1,4}`` on the 256-channel stage 3 (64 channels inside)."""
    g = torch.Generator().manual_seed(3)
    state = {f"pretrained.{k}": v for k, v in _deep_stem_imagenet_file().items() if not k.startswith("fc.")}

    def conv(name, *shape, bias=False):
        out = {f"{name}.weight": torch.randn(*shape, generator=g) * 0.05}
        return out | ({f"{name}.bias": torch.randn(shape[0], generator=g)} if bias else {})

    def bn(name, n):
        return {f"{name}.weight": torch.rand(n, generator=g) + 0.5, f"{name}.bias": torch.randn(n, generator=g) * 0.1,
                f"{name}.running_mean": torch.randn(n, generator=g) * 0.1,
                f"{name}.running_var": torch.rand(n, generator=g) + 0.5, f"{name}.num_batches_tracked": torch.tensor(3)}

    c, cin = 128, 512
    state |= conv("head.aspp.b0.0", c, cin, 1, 1) | bn("head.aspp.b0.1", c)
    for k in (1, 2, 3):
        state |= conv(f"head.aspp.b{k}.block.0", c, cin, 3, 3) | bn(f"head.aspp.b{k}.block.1", c)
    state |= conv("head.aspp.b4.gap.1", c, cin, 1, 1) | bn("head.aspp.b4.gap.2", c)
    state |= conv("head.aspp.project.0", c, 5 * c, 1, 1) | bn("head.aspp.project.1", c)
    state |= conv("head.block.0", c, c, 3, 3) | bn("head.block.1", c) | conv("head.block.4", num_classes, c, 1, 1, bias=True)
    state |= conv("auxlayer.block.0", 64, 256, 3, 3) | bn("auxlayer.block.1", 64)
    state |= conv("auxlayer.block.4", num_classes, 64, 1, 1, bias=True)
    return state


def test_a_cirkd_deeplabv3_converts_with_its_deep_stem_its_head_and_its_input_space(tmp_path):
    state = _cirkd_deeplabv3_resnet18(19)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "cirkd.pth")  # a DDP save
    info = {"classes": [f"class_{i}" for i in range(19)], "num_classes": 19}
    config = {"head": "deeplabv3", "backbone": "resnet18_deep", "output_stride": 8, "head_channels": 128}
    payload = convert_teacher(tmp_path / "cirkd.pth", "cirkd", config, info, DATA_STATS)
    check_model_matches_data(payload, info, "teacher")
    network = network_from_payload(payload).eval()
    sd = network.state_dict()
    for ours, theirs in [("head.aspp.convs.0.0.weight", "head.aspp.b0.0.weight"),
                         ("head.aspp.convs.2.0.weight", "head.aspp.b2.block.0.weight"),
                         ("head.aspp.convs.4.1.weight", "head.aspp.b4.gap.1.weight"),
                         ("head.fuse.0.weight", "head.block.0.weight"), ("head.classifier.bias", "head.block.4.bias"),
                         ("aux_head.block.2.weight", "auxlayer.block.4.weight"),
                         ("backbone.layer3.0.conv1.weight", "pretrained.layer3.0.conv1.weight")]:
        torch.testing.assert_close(sd[ours], state[theirs])
    # The input adapter turns this project's standardised RGB into CIRKD's BGR, 0-255, Caffe-mean input, and the
    # deep stem then computes what CIRKD's stem computes on it.
    pixels = torch.randint(0, 256, (1, 3, 24, 24), generator=torch.Generator().manual_seed(4)).float()
    ours = (pixels / 255 - torch.tensor(DATA_STATS["mean"]).view(3, 1, 1)) / torch.tensor(DATA_STATS["std"]).view(3, 1, 1)
    bgr = pixels[:, [2, 1, 0]] - torch.tensor(CAFFE_BGR_MEAN).view(3, 1, 1)
    torch.testing.assert_close(network.input_adapter(ours), bgr, atol=1e-3, rtol=1e-5)
    with torch.no_grad():
        expected = _stem(bgr, state, "pretrained.")
        # random 3×3 stems on 0-255 input: values ~1e2 and cancellations, so float32 error is relative to the scale
        torch.testing.assert_close(network.backbone.stage1[:4](network.input_adapter(ours)), expected,
                                   atol=1e-4 * float(expected.abs().max()), rtol=0)
    # CIRKD's dilation: layer 3's first 3×3 conv keeps dilation 1, the rest of layer 3 has 2; layer 4: 2, then 4
    assert network.backbone.layer3[0].conv1.dilation == (1, 1) and network.backbone.layer3[0].conv2.dilation == (2, 2)
    assert network.backbone.layer4[0].conv1.dilation == (2, 2) and network.backbone.layer4[1].conv1.dilation == (4, 4)
    with pytest.raises(ValueError, match="keys this converter does not know: head.extra.weight"):
        torch.save(state | {"head.extra.weight": torch.zeros(1)}, tmp_path / "odd.pth")
        convert_teacher(tmp_path / "odd.pth", "cirkd", config, info, DATA_STATS)


class _Cache(dict):
    source_fingerprint = "tiny"


def test_the_teacher_stage_evaluates_a_converted_cirkd_teacher_instead_of_training_one(tmp_path):
    from sstkd.pipelines.teacher.nodes import train_teacher
    from tests.training import helpers

    torch.save(_cirkd_deeplabv3_resnet18(10), tmp_path / "cirkd.pth")
    network = {"head": "deeplabv3", "backbone": "resnet18_deep", "output_stride": 8, "head_channels": 128}
    info = helpers.INFO | {"layout": "tiny"}
    payload, history = train_teacher(
        _Cache(helpers.tiny_cache(n_train=2, n_val=2)), info, DATA_STATS,
        {"epochs": 1, "batch_size": 2, "crop_size": [32, 32], "progress": False},
        {"network": network, "checkpoint": str(tmp_path / "cirkd.pth"), "checkpoint_format": "cirkd"})
    assert payload["source_format"] == "cirkd" and payload["network"]["input_adapter"] is True
    assert payload["class_names"] == info["classes"] and history[0]["epoch"] == 0  # evaluated, not trained
    assert 0 <= history[0]["val_miou"] <= 1
    with pytest.raises(ValueError, match="does not fit teacher.network"):
        train_teacher(_Cache(helpers.tiny_cache(n_train=2, n_val=2)), info, DATA_STATS, {"progress": False},
                      {"network": network | {"head_channels": 256}, "checkpoint": str(tmp_path / "cirkd.pth"),
                       "checkpoint_format": "cirkd"})


def test_new_network_keys_at_their_defaults_leave_earlier_fingerprints_unchanged():
    from sstkd.models.segmenter import NetworkConfig

    config = NetworkConfig(head="pspnet", backbone="resnet10")
    assert set(config.identity()) == set(config.model_dump()) - {"dilation_scheme", "input_adapter"}
    assert NetworkConfig(backbone="resnet10", dilation_scheme="torchvision").identity()["dilation_scheme"] == "torchvision"
