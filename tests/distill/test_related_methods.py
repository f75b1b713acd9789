"""The comparison methods of CIRKD's tables: each against a direct, slow computation of its definition, its
defining invariance, and one real training step from the method entries of conf/base."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from kedro.config import OmegaConfigLoader

from sstkd.data.sources import IGNORE_INDEX
from sstkd.distill.losses import ChannelwiseFeatureDistillation, PairwiseDistillation, channelwise_kl
from sstkd.distill.related_methods import (
    AttentionTransfer,
    CrossImageRelationDistillation,
    DISTRelation,
    FitNetHint,
    IntraClassFeatureVariation,
)
from sstkd.models.segmenter import SegmentationOutput
from sstkd.settings import CONFIG_LOADER_ARGS
from sstkd.training.recipe import network_from_payload
from tests.training import helpers

ROOT = Path(__file__).resolve().parents[2]
K = 4


def _output(logits=None, head=None):
    return SegmentationOutput(logits, None, None, None, head)


def _masks(seed, size=(8, 8), batch=2):
    masks = torch.randint(0, K, (batch, *size), generator=torch.Generator().manual_seed(seed))
    masks[0, :2, :3] = IGNORE_INDEX
    return masks


def _features(seed, channels, size=(8, 8), batch=2):
    return torch.randn(batch, channels, *size, generator=torch.Generator().manual_seed(seed))


def test_attention_transfer_is_the_normalised_squared_activation_map_difference():
    s, t = _features(0, 6), _features(1, 10)
    value = AttentionTransfer(p=2)(_output(head=s), _output(head=t), {})
    expected = 0.0
    for b in range(2):
        a_s = (s[b] ** 2).mean(0).flatten()
        a_t = (t[b] ** 2).mean(0).flatten()
        expected += ((a_s / a_s.norm() - a_t / a_t.norm()) ** 2).sum().item()
    assert value.item() == pytest.approx(expected / (2 * 64), rel=1e-5)
    # a positive scale of the student's features changes nothing; the teacher's own map matches it exactly
    assert AttentionTransfer()(_output(head=7 * s), _output(head=t), {}).item() == pytest.approx(value.item(), rel=1e-5)
    assert AttentionTransfer()(_output(head=t), _output(head=t), {}).item() == pytest.approx(0, abs=1e-9)


def test_fitnet_regresses_the_teacher_feature_through_its_trained_adapter():
    s, t = _features(0, 6), _features(1, 10)
    loss = FitNetHint(6, 10)
    regressed = torch.einsum("oc,bchw->bohw", loss.regressor.weight[:, :, 0, 0], s)
    assert loss(_output(head=s), _output(head=t), {}).item() == pytest.approx(((regressed - t) ** 2).mean().item(),
                                                                              rel=1e-5)
    with torch.no_grad():  # an adapter that copies the student's 6 channels onto the teacher's first 6
        loss.regressor.weight.zero_()
        loss.regressor.weight[:6, :, 0, 0] = torch.eye(6)
    padded = torch.cat([s, torch.zeros(2, 4, 8, 8)], dim=1)
    assert loss(_output(head=s), _output(head=padded), {}).item() == pytest.approx(0, abs=1e-9)
    loss(_output(head=s), _output(head=t), {}).backward()
    assert loss.regressor.weight.grad.abs().sum() > 0


def test_dist_is_one_minus_pearson_across_classes_and_across_pixels():
    z_s, z_t = _features(0, K, (5, 3)), _features(1, K, (5, 3))
    value = DISTRelation(temperature=2.0, inter_weight=1.0, intra_weight=0.5)(_output(z_s), _output(z_t), {})
    p_s = (z_s / 2).softmax(1).permute(0, 2, 3, 1).reshape(-1, K).double()
    p_t = (z_t / 2).softmax(1).permute(0, 2, 3, 1).reshape(-1, K).double()
    inter = sum(1 - torch.corrcoef(torch.stack([p_s[i], p_t[i]]))[0, 1] for i in range(len(p_s))) / len(p_s)
    intra = sum(1 - torch.corrcoef(torch.stack([p_s[:, k], p_t[:, k]]))[0, 1] for k in range(K)) / K
    assert value.item() == pytest.approx(4 * (inter + 0.5 * intra).item(), rel=1e-5)
    assert DISTRelation()(_output(z_t), _output(z_t), {}).item() == pytest.approx(0, abs=1e-6)


def _slow_prototype_similarity(features, labels):
    out = torch.ones(labels.shape)
    for b in range(labels.shape[0]):
        for k in range(K):
            where = labels[b] == k
            if where.any():
                prototype = features[b][:, where].mean(dim=1)
                out[b][where] = F.cosine_similarity(features[b][:, where], prototype[:, None], dim=0)
    return out


def test_ifvd_matches_each_pixels_similarity_to_its_class_prototype():
    s, t = _features(0, 6), _features(1, 10)
    masks = _masks(2, (16, 16))
    value = IntraClassFeatureVariation(K)(_output(head=s), _output(head=t), {"masks": masks})
    labels = masks[:, ::2, ::2]  # nearest downsampling by 2 picks the top-left pixel of each 2×2 cell
    expected = ((_slow_prototype_similarity(s, labels) - _slow_prototype_similarity(t, labels)) ** 2).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-4)
    # a positive scale of the features and a copy of channels leave every cosine unchanged
    assert IntraClassFeatureVariation(K)(_output(head=torch.cat([3 * t, 3 * t], 1)), _output(head=t),
                                         {"masks": masks}).item() == pytest.approx(0, abs=1e-10)


def test_cirkd_minibatch_relation_is_the_kl_of_cross_image_similarity_rows():
    s, t = _features(0, 6, (3, 4), batch=3), _features(1, 10, (3, 4), batch=3)
    loss = CrossImageRelationDistillation(K, 6, 10, memory_pixel_weight=0, memory_region_weight=0, group_size=3)
    value = loss(_output(head=s), _output(head=t), {"masks": _masks(0, (3, 4), 3)})
    assert loss.projection is None  # no memory term: no trained module DDP would find unused
    def rows(f, i, j):  # pixel i·n against pixel j·m, cosine over channels, at τ = 0.1
        a, b = F.normalize(f[i].flatten(1), dim=0), F.normalize(f[j].flatten(1), dim=0)
        return (a.T @ b) / 0.1

    def pair_kl(i, j):
        p_t, log_s = rows(t, i, j).softmax(1), rows(s, i, j).log_softmax(1)
        return (p_t * (p_t.log() - log_s)).sum(1).mean().item()

    expected = sum(pair_kl(i, j) for i in range(3) for j in range(3))
    assert value.item() == pytest.approx(expected / 9, rel=1e-5)
    # CIRKD's groups (the images of one GPU): pairs within {0, 1} and within {2}, then the mean over groups
    grouped = CrossImageRelationDistillation(K, 6, 10, memory_pixel_weight=0, memory_region_weight=0, group_size=2)
    within = [sum(pair_kl(i, j) for i in g for j in g) / len(g) ** 2 for g in ([0, 1], [2])]
    assert grouped(_output(head=s), _output(head=t), {"masks": _masks(0, (3, 4), 3)}).item() == pytest.approx(
        sum(within) / 2, rel=1e-5)
    assert loss(_output(head=t[:, :6]), _output(head=t[:, :6]),
                {"masks": _masks(0, (3, 4), 3)}).item() == pytest.approx(0, abs=1e-6)


def test_cirkd_memory_keeps_teacher_pixels_and_class_means_of_each_class():
    # Teacher features: every pixel of class k points along axis k, so a queue entry's class can be read off.
    masks = _masks(3, (6, 6))
    t = F.one_hot(masks.clamp(0, K - 1), 6).permute(0, 3, 1, 2).float() + 0.01
    loss = CrossImageRelationDistillation(K, 5, 6, minibatch_weight=0, pixel_memory=50, region_memory=7,
                                          pixels_per_update=4)
    loss.train()
    value = loss(_output(head=_features(4, 5, (6, 6))), _output(head=t), {"masks": masks})
    assert math.isfinite(value.item()) and value.item() > 0
    for k in range(K):
        present = sum(int((masks[b] == k).any()) for b in range(2))
        assert int(loss.region_pointer[k]) == present
        stored = loss.pixel_queue[k, : int(loss.pixel_pointer[k])]
        assert len(stored) == sum(min(4, int((masks[b] == k).sum())) for b in range(2))
        assert (stored.argmax(dim=1) == k).all()            # pixels of class k only
        assert (loss.region_queue[k, :present].argmax(dim=1) == k).all()
        assert torch.allclose(loss.region_queue[k, :present].norm(dim=1), torch.ones(present))
    value.backward()
    assert loss.projection[0].weight.grad.abs().sum() > 0   # the projection learns with the student


def test_cirkd_memory_relation_against_a_direct_computation():
    masks = _masks(5, (4, 4))
    s, t = _features(6, 5, (4, 4)), _features(7, 6, (4, 4))
    loss = CrossImageRelationDistillation(K, 5, 6, minibatch_weight=0, memory_region_weight=0, pixel_memory=9,
                                          pixel_contrast=8, temperature=0.5).eval()  # eval: memory not updated
    torch.manual_seed(0)
    value = loss(_output(head=s), _output(head=t), {"masks": masks})
    torch.manual_seed(0)
    index = torch.randperm(9)[: 8 // K + 1]
    bank = loss.pixel_queue[:, index].reshape(-1, 6)
    valid = (masks != IGNORE_INDEX).flatten()
    anchors_s = F.normalize(loss.projection(s), dim=1).permute(0, 2, 3, 1).reshape(-1, 6)[valid]
    anchors_t = F.normalize(t, dim=1).permute(0, 2, 3, 1).reshape(-1, 6)[valid]
    expected = 0.0
    for a_s, a_t in zip(anchors_s, anchors_t):
        p_t = (bank @ a_t / 0.5).softmax(0)
        expected += (p_t * (p_t.log() - (bank @ a_s / 0.5).log_softmax(0))).sum().item()
    assert value.item() == pytest.approx(0.1 * expected / len(anchors_s), rel=1e-5)


def test_cirkds_skd_graph_pools_two_by_two_nodes_of_the_head_feature():
    s, t = _features(0, 6, (5, 4)), _features(1, 10, (5, 4))
    value = PairwiseDistillation(feature="head", kernel=2)(_output(head=s), _output(head=t), {})

    def graph(f):  # 2×2 max-pooled nodes (the last row of a 5-row map is a node of its own), cosine similarities
        padded = torch.cat([f, f[:, :, -1:]], dim=2)  # ceil_mode: a window of one row takes that row's max
        nodes = padded.unfold(2, 2, 2).unfold(3, 2, 2).amax(dim=(-1, -2)).flatten(2)
        nodes = nodes / nodes.norm(dim=1, keepdim=True)
        return nodes.transpose(1, 2) @ nodes

    assert value.item() == pytest.approx(((graph(s) - graph(t)) ** 2).mean().item(), rel=1e-5)
    assert PairwiseDistillation(feature="head", kernel=2)(_output(head=2 * t), _output(head=t), {}).item() < 1e-12


def test_cirkds_feature_cwd_adapts_the_student_width_and_is_cwd_on_the_head_feature():
    s, t = _features(0, 6), _features(1, 10)
    loss = ChannelwiseFeatureDistillation(6, 10, temperature=4.0)
    assert loss(_output(head=s), _output(head=t), {}).item() == pytest.approx(
        channelwise_kl(loss.adapter(s), t, 4.0).item())
    same_width = ChannelwiseFeatureDistillation(10, 10)
    assert isinstance(same_width.adapter, torch.nn.Identity)
    assert same_width(_output(head=t), _output(head=t), {}).item() == pytest.approx(0, abs=1e-7)
    loss(_output(head=s), _output(head=t), {}).backward()
    assert loss.adapter.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["at", "fitnet", "ifvd", "dist", "cirkd"])
def test_each_comparison_method_trains_a_step_from_its_configured_entry(method):
    methods = OmegaConfigLoader(str(ROOT / "conf"), env="tiny", **CONFIG_LOADER_ARGS)["parameters"]["distillation"][
        "methods"]
    losses = {name: dict(options or {}) for name, options in methods[method]["losses"].items()}
    teacher, _ = helpers.train(epochs=1, max_steps_per_epoch=1)
    cache = helpers.tiny_cache()
    payload, result = helpers.train_network(
        method, cache, helpers.INFO, helpers.STATS, helpers.STUDENT, losses,
        helpers.config(epochs=1, max_steps_per_epoch=2), teacher_payload=teacher)
    history = result.history[0]
    assert all(math.isfinite(history[f"loss_{name}"]) for name in losses), history
    own_term = {"at": "attention"}.get(method, method)
    assert history[f"loss_{own_term}"] > 0, history  # the method's own term is active, not weighted away
    assert network_from_payload(payload).num_classes == 10
