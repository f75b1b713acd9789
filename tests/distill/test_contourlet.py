import math

import pytest
import torch

from sstkd.distill.contourlet import (
    ContourletDecomposition,
    DirectionalFilterBank,
    LaplacianPyramid,
    directional_masks,
    standardize_channels,
)


def _grating(angle, size=64, frequency=0.2):
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    return torch.sin(2 * math.pi * frequency * (x * math.cos(angle) - y * math.sin(angle)))


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 4, 37, 50), (1, 2, 9, 7)])
def test_laplacian_pyramid_reconstructs_its_input(shape):
    x = torch.randn(shape)
    pyramid = LaplacianPyramid(levels=3)
    bands, low = pyramid(x)
    assert [b.shape[-2:] for b in bands][0] == shape[-2:]
    assert bands[1].shape[-2:] == (math.ceil(shape[2] / 2), math.ceil(shape[3] / 2))
    torch.testing.assert_close(pyramid.reconstruct(bands, low), x, atol=1e-5, rtol=1e-5)


def test_constant_input_has_no_band_pass_energy():
    bands, low = LaplacianPyramid(3)(torch.full((1, 2, 40, 40), 3.0))
    assert max(float(b.abs().max()) for b in bands) < 1e-5
    torch.testing.assert_close(low, torch.full_like(low, 3.0))


@pytest.mark.parametrize("directions", [2, 4, 8, 16])
def test_each_grating_lands_in_its_directional_subband(directions):
    bank = DirectionalFilterBank(directions)  # offset ½: direction d is centred on d·π/D
    for d in range(directions):
        angle = d * math.pi / directions
        energy = bank(_grating(angle)[None, None]).pow(2).sum(dim=(0, 2, 3, 4))
        assert int(energy.argmax()) == d
        assert float(energy.max() / energy.sum()) > 0.6


@pytest.mark.parametrize("directions", [4, 8, 16])
def test_horizontal_and_vertical_structure_stay_whole_with_the_angular_offset(directions):
    for angle in (0.0, math.pi / 2):  # wave vector along x (vertical stripes) and along y (horizontal stripes)
        grating = _grating(angle, frequency=0.25)[None, None]
        with_offset = DirectionalFilterBank(directions, offset=0.5)(grating).pow(2).sum(dim=(0, 2, 3, 4))
        assert float(with_offset.max() / with_offset.sum()) > 0.999
        without = DirectionalFilterBank(directions, offset=0.0)(grating).pow(2).sum(dim=(0, 2, 3, 4))
        top_two = without.sort(descending=True).values[:2] / without.sum()
        torch.testing.assert_close(top_two, torch.tensor([0.5, 0.5]), atol=1e-3, rtol=0)


@pytest.mark.parametrize("size", [(64, 64), (33, 40), (31, 31)])
def test_directional_bank_is_a_tight_frame(size):
    for transition, offset in ((0.0, 0.5), (0.5, 0.5), (1.0, 0.5), (0.5, 0.0), (0.0, 0.0)):
        masks = directional_masks(*size, 8, transition, offset)
        torch.testing.assert_close(masks.pow(2).sum(0), torch.ones(size[0], size[1] // 2 + 1), atol=1e-5, rtol=0)
    bank = DirectionalFilterBank(8)
    x = torch.randn(2, 3, *size)
    subbands = bank(x)
    assert subbands.shape == (2, 8, 3, *size)
    torch.testing.assert_close(subbands.pow(2).sum(), x.pow(2).sum(), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(bank.reconstruct(subbands), x, atol=1e-4, rtol=1e-4)


def test_contourlet_gradients_flow_and_shapes():
    x = torch.randn(2, 3, 24, 20, requires_grad=True)
    levels = ContourletDecomposition(levels=3, directions=4)(x)
    assert [tuple(t.shape) for t in levels] == [(2, 4, 3, 24, 20), (2, 4, 3, 12, 10), (2, 4, 3, 6, 5)]
    sum(t.pow(2).sum() for t in levels).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_standardize_channels():
    x = torch.randn(2, 3, 8, 8) * 5 + 2
    z = standardize_channels(x)
    torch.testing.assert_close(z.mean(dim=(-2, -1)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(-2, -1), unbiased=False), torch.ones(2, 3), atol=1e-3, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.randn(2, 8, 40, 36)
    module = ContourletDecomposition(3, 8)
    cpu = module(x)
    gpu = module.cuda()(x.cuda())
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", [(24, 24), (19, 30)])
def test_spectral_energy_equals_the_energy_of_explicit_subbands(size):
    bank = DirectionalFilterBank(8)
    x = torch.randn(2, 3, *size)
    explicit = bank(x).pow(2).sum(dim=(-2, -1))  # (B, D, C)
    torch.testing.assert_close(bank.energy(x), explicit, rtol=1e-4, atol=1e-4)
