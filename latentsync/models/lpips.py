"""LPIPS (v0.1, VGG16 trunk) as the ``lpips`` 0.1.4 package computes it (training/README §4.4), without importing it.

The package imports torchvision, whose installable wheels do not load against a CPU-only torch, so the two parts
are rebuilt here: the VGG16 ``features`` trunk under torchvision's layer names (the official
``vgg16-397923af.pth`` loads into it; its unused ``classifier.*`` entries are dropped by name), and the five v0.1
linear heads, whose weights ship inside the ``lpips`` wheel as ``lpips/weights/v0.1/vgg.pth`` (found with
``importlib.util.find_spec``, which locates the package without running it).

Distance per image pair, inputs in [-1, 1]: ``x' = (x - SHIFT) / SCALE``; for each tap k (relu1_2 .. relu5_3) unit-
normalise the features over channels, square the difference, weight channels with head k (1x1 conv, no bias),
average over pixels; sum over taps -> (n, 1, 1, 1).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

# The package's ScalingLayer: ImageNet mean/std mapped to the [-1, 1] input convention.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
FEATURE_EPS = 1e-10  # normalize_tensor: f / (||f|| + eps)
# torchvision vgg16 "D" configuration: conv widths, "M" = 2x2 max-pool.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# LPIPS taps: features[0:4] -> relu1_2, [4:9] -> relu2_2, [9:16] -> relu3_3, [16:23] -> relu4_3, [23:30] -> relu5_3.
TAP_ENDS = (4, 9, 16, 23, 30)
TAP_CHANNELS = (64, 128, 256, 512, 512)
VGG_CLASSIFIER_KEYS = frozenset(f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias"))
LPIPS_HEADS_FILE = ("weights", "v0.1", "vgg.pth")  # inside the installed lpips package


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` (same indices, so the same state_dict names)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = item
    return nn.Sequential(*layers)


class LinearHead(nn.Module):
    """``lin{k}``: Dropout (inactive in eval) then a bias-free 1x1 conv to one channel (names ``model.1.weight``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LinearHeads(nn.Module):
    """The five v0.1 heads, named ``lin0`` .. ``lin4`` as in the package's weight file."""

    def __init__(self) -> None:
        super().__init__()
        for k, channels in enumerate(TAP_CHANNELS):
            self.add_module(f"lin{k}", LinearHead(channels))

    def __getitem__(self, k: int) -> LinearHead:
        return getattr(self, f"lin{k}")


def lpips_heads_path() -> Path:
    """``lpips/weights/v0.1/vgg.pth`` of the installed ``lpips`` wheel (located, not imported)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the lpips package is not installed; its v0.1 head weights are needed "
                                "(pip install --no-deps lpips==0.1.4)")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*LPIPS_HEADS_FILE)


def load_vgg16_state(path: str | Path) -> dict[str, torch.Tensor]:
    """``features.*`` of a torchvision ``vgg16`` file with the prefix removed; the classifier must be exactly the
    six ``classifier.*`` tensors (dropped: LPIPS never uses them), anything else raises."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    others = set(state) - {f"features.{k}" for k in features}
    if others != VGG_CLASSIFIER_KEYS:
        raise ValueError(f"{path} is not a torchvision vgg16 state dict: besides features.* it holds "
                         f"{sorted(others)}, expected {sorted(VGG_CLASSIFIER_KEYS)}")
    return features


def normalise_channels(features: torch.Tensor) -> torch.Tensor:
    """Unit length over the channel axis at every pixel: f / (sqrt(sum_c f^2) + 1e-10)."""
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + FEATURE_EPS)


class LPIPS(nn.Module):
    """Learned perceptual distance, VGG v0.1; frozen, eval mode. ``forward(a, b)`` -> (n, 1, 1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.features = vgg16_features()
        self.heads = LinearHeads()
        self.eval().requires_grad_(False)

    @classmethod
    def from_files(cls, vgg_path: str | Path, heads_path: str | Path | None = None) -> LPIPS:
        """VGG16 from ``vgg16-397923af.pth`` and the heads from the lpips wheel (or ``heads_path``), both strict."""
        model = cls()
        model.features.load_state_dict(load_vgg16_state(vgg_path), strict=True)
        heads = torch.load(heads_path or lpips_heads_path(), map_location="cpu", weights_only=True)
        model.heads.load_state_dict(heads, strict=True)
        return model

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """relu1_2 .. relu5_3 of the scaled input."""
        x = (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)
        outputs, start = [], 0
        for end in TAP_ENDS:
            for layer in self.features[start:end]:
                x = layer(x)
            outputs.append(x)
            start = end
        return outputs

    def distance_from_taps(self, taps_a: list[torch.Tensor], taps_b: list[torch.Tensor]) -> torch.Tensor:
        total = 0
        for k, (fa, fb) in enumerate(zip(taps_a, taps_b)):
            diff = (normalise_channels(fa) - normalise_channels(fb)).pow(2)  # (n, c, h, w)
            total = total + self.heads[k](diff).mean(dim=(2, 3), keepdim=True)  # (n, 1, 1, 1)
        return total

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.distance_from_taps(self.taps(a), self.taps(b))
