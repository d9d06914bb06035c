"""LPIPS (VGG, v0.1) rebuilt without the lpips package: heads, VGG names, normalisation and the distance formula."""

from __future__ import annotations

import sys

import pytest
import torch

from latentsync.models.lpips import (
    LPIPS,
    SCALE,
    SHIFT,
    TAP_CHANNELS,
    load_vgg16_state,
    lpips_heads_path,
    normalise_channels,
    vgg16_features,
)

# torchvision's vgg16().features: the conv layers' indices (the ReLUs and pools have no parameters).
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def test_heads_from_the_lpips_wheel_load_strictly_without_importing_lpips():
    model = LPIPS()
    heads = torch.load(lpips_heads_path(), map_location="cpu", weights_only=True)
    assert set(heads) == {f"lin{k}.model.1.weight" for k in range(5)}
    model.heads.load_state_dict(heads, strict=True)
    for k, channels in enumerate(TAP_CHANNELS):
        assert model.heads[k].model[1].weight.shape == (1, channels, 1, 1)
        assert torch.equal(model.heads[k].model[1].weight, heads[f"lin{k}.model.1.weight"])
        assert (heads[f"lin{k}.model.1.weight"] >= 0).all()  # v0.1 heads are clamped non-negative
    assert "lpips" not in sys.modules


def test_vgg_names_are_torchvision_and_the_classifier_is_dropped(tmp_path):
    features = vgg16_features()
    expected = [f"{i}.{p}" for i in TORCHVISION_CONV_INDICES for p in ("weight", "bias")]
    assert list(features.state_dict()) == expected
    assert sum(p.numel() for p in features.parameters()) == 14_714_688  # torchvision vgg16 features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state.update({f"classifier.{i}.{p}": torch.zeros(1) for i in (0, 3, 6) for p in ("weight", "bias")})
    torch.save(state, tmp_path / "vgg16.pth")
    model = LPIPS.from_files(tmp_path / "vgg16.pth")
    assert torch.equal(model.features[28].bias, features[28].bias)
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="extra.weight"):
        load_vgg16_state(tmp_path / "odd.pth")


def test_input_scaling_maps_minus_one_one_to_imagenet_statistics():
    model = LPIPS()
    seen = {}
    model.features[0].register_forward_hook(lambda m, args, out: seen.update(input=args[0]))
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    model.taps(x)
    expected = [(v - s) / c for v, s, c in zip((-1.0, 0.0, 1.0), SHIFT, SCALE)]
    torch.testing.assert_close(seen["input"][0, :, 0, 0], torch.tensor(expected))
    # The shift and scale are ImageNet's mean/std in [-1, 1] units: (mean - 0.5) / 0.5 and std / 0.5, rounded.
    torch.testing.assert_close(torch.tensor(SHIFT), (torch.tensor([0.485, 0.456, 0.406]) - 0.5) / 0.5, atol=0.005,
                               rtol=0)
    torch.testing.assert_close(torch.tensor(SCALE), torch.tensor([0.229, 0.224, 0.225]) / 0.5, atol=0.005, rtol=0)


def test_distance_formula_on_constructed_features():
    model = LPIPS()
    heads = torch.load(lpips_heads_path(), map_location="cpu", weights_only=True)
    model.heads.load_state_dict(heads, strict=True)
    generator = torch.Generator().manual_seed(0)
    taps_a = [torch.randn(2, c, 4, 3, generator=generator) for c in TAP_CHANNELS]
    taps_b = [torch.randn(2, c, 4, 3, generator=generator) for c in TAP_CHANNELS]
    expected = torch.zeros(2)
    for k, (fa, fb) in enumerate(zip(taps_a, taps_b)):
        w = heads[f"lin{k}.model.1.weight"].flatten()
        na = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
        nb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
        expected += torch.einsum("c,nchw->n", w, (na - nb) ** 2) / (4 * 3)
    distance = model.distance_from_taps(taps_a, taps_b)
    assert distance.shape == (2, 1, 1, 1)
    torch.testing.assert_close(distance.flatten(), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model.distance_from_taps(taps_a, taps_a), torch.zeros(2, 1, 1, 1))
    unit = normalise_channels(taps_a[0])
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(2, 4, 3), atol=1e-5, rtol=0)


def test_identical_images_are_at_distance_zero_and_gradients_reach_the_input():
    model = LPIPS()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert model(x, x).abs().max() == 0
    y = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    model.heads.load_state_dict(torch.load(lpips_heads_path(), map_location="cpu", weights_only=True))
    model(y, x).sum().backward()
    assert y.grad.abs().sum() > 0 and not any(p.requires_grad for p in model.parameters())
