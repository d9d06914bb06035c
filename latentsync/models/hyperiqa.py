"""hyperIQA (Su et al., CVPR 2020) trained on KonIQ-10k: the data toolchain's visual-quality score (0-100).

Written from the reference notes (training/README.md §3 of the reference fixtures), in plain torch so that it does
not need torchvision (whose installable wheels do not load against the CPU torch). Three parts:

* :class:`ResNetBackbone`: ResNet-50 (Bottleneck blocks [3, 4, 6, 3], stride on the 3x3 conv) under torchvision's
  layer names (``conv1``, ``bn1``, ``layerL.B.conv1`` ...; no ``fc``), plus the local-distortion-aware ("lda")
  heads that pool each stage into a 16-d vector (the last stage into 176-d): together the 224-d target-network input.
* :class:`HyperNet`: turns the last stage's features into the weights and biases of a small per-image MLP.
* :func:`target_net`: runs that MLP (224 -> 112 -> 56 -> 28 -> 14 -> 1, sigmoid between layers, none at the end).

:func:`load_hyperiqa` reads the official ``koniq_pretrained.pkl`` (a plain state_dict, 355 entries) strictly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from latentsync.errors import CheckpointError

INPUT_SIZE = 224  # the pooling sizes below assume a 224 x 224 input (backbone output 7 x 7)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BOTTLENECK_EXPANSION = 4
RESNET50_BLOCKS = (3, 4, 6, 3)
LDA_POOL = 7  # AvgPool2d(7, stride 7) on every stage: 56 -> 8, 28 -> 4, 14 -> 2, 7 -> 1


@dataclass(frozen=True)
class HyperIQAConfig:
    """The official constructor's arguments: ``HyperNet(16, 112, 224, 112, 56, 28, 14, 7)``."""

    lda_out_channels: int = 16  # each of the first three lda heads gives this many features
    hyper_in_channels: int = 112  # channels of the hyper network's feature map
    target_in_size: int = 224  # target-network input: 3 x 16 + 176
    target_fc1_size: int = 112
    target_fc2_size: int = 56
    target_fc3_size: int = 28
    target_fc4_size: int = 14
    feature_size: int = 7  # spatial side of the backbone's last feature map at a 224 input


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here) -> 1x1 (x4 channels), BatchNorm after each, residual + ReLU."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * BOTTLENECK_EXPANSION
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


def _lda_pool(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv (no bias) then 7x7 average pooling (official ``ldaK_pool``; the pool holds no weights)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.AvgPool2d(LDA_POOL, stride=LDA_POOL))


def _resnet_stage(in_channels: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """torchvision's ``layerL``: the first block changes size/channels, the rest keep them."""
    out_channels = planes * BOTTLENECK_EXPANSION
    rest = [Bottleneck(out_channels, planes) for _ in range(blocks - 1)]
    return nn.Sequential(Bottleneck(in_channels, planes, stride), *rest)


class ResNetBackbone(nn.Module):
    """ResNet-50 features + the four lda heads -> (hyper_in_feat (B, 2048, 7, 7), target_in_vec (B, 224))."""

    def __init__(self, config: HyperIQAConfig = HyperIQAConfig()):
        super().__init__()
        lda = config.lda_out_channels
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        # Registration order = the official state_dict order: the four stages, then the lda heads.
        self.layer1 = _resnet_stage(64, 64, RESNET50_BLOCKS[0], stride=1)  # -> 256 channels, 56 x 56
        self.layer2 = _resnet_stage(256, 128, RESNET50_BLOCKS[1], stride=2)  # -> 512, 28 x 28
        self.layer3 = _resnet_stage(512, 256, RESNET50_BLOCKS[2], stride=2)  # -> 1024, 14 x 14
        self.layer4 = _resnet_stage(1024, 512, RESNET50_BLOCKS[3], stride=2)  # -> 2048, 7 x 7
        # Pooled sizes at a 224 input: 56/7 = 8, 28/7 = 4, 14/7 = 2 per side.
        self.lda1_pool, self.lda1_fc = _lda_pool(256, 16), nn.Linear(16 * 8 * 8, lda)
        self.lda2_pool, self.lda2_fc = _lda_pool(512, 32), nn.Linear(32 * 4 * 4, lda)
        self.lda3_pool, self.lda3_fc = _lda_pool(1024, 64), nn.Linear(64 * 2 * 2, lda)
        self.lda4_pool = nn.AvgPool2d(LDA_POOL, stride=LDA_POOL)
        self.lda4_fc = nn.Linear(2048, config.target_in_size - 3 * lda)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))  # (B, 64, 56, 56)
        x = self.layer1(x)  # (B, 256, 56, 56)
        lda_1 = self.lda1_fc(self.lda1_pool(x).flatten(1))  # (B, 16)
        x = self.layer2(x)  # (B, 512, 28, 28)
        lda_2 = self.lda2_fc(self.lda2_pool(x).flatten(1))
        x = self.layer3(x)  # (B, 1024, 14, 14)
        lda_3 = self.lda3_fc(self.lda3_pool(x).flatten(1))
        x = self.layer4(x)  # (B, 2048, 7, 7)
        lda_4 = self.lda4_fc(self.lda4_pool(x).flatten(1))  # (B, 176)
        return x, torch.cat([lda_1, lda_2, lda_3, lda_4], dim=1)  # (B, 2048, 7, 7), (B, 224)


@dataclass
class TargetParams:
    """The per-image target network produced by :class:`HyperNet` (shapes for a batch B, default config)."""

    fc1w: torch.Tensor  # (B, 112, 224)
    fc1b: torch.Tensor  # (B, 112)
    fc2w: torch.Tensor  # (B, 56, 112)
    fc2b: torch.Tensor  # (B, 56)
    fc3w: torch.Tensor  # (B, 28, 56)
    fc3b: torch.Tensor  # (B, 28)
    fc4w: torch.Tensor  # (B, 14, 28)
    fc4b: torch.Tensor  # (B, 14)
    fc5w: torch.Tensor  # (B, 1, 14)
    fc5b: torch.Tensor  # (B, 1)


def target_net(vec: torch.Tensor, params: TargetParams) -> torch.Tensor:
    """Per-image MLP: ``vec`` (B, 224) -> scores (B,). Sigmoid after layers 1-4, none after layer 5."""
    layers = [(params.fc1w, params.fc1b), (params.fc2w, params.fc2b), (params.fc3w, params.fc3b),
              (params.fc4w, params.fc4b)]  # fmt: skip
    q = vec
    for weight, bias in layers:
        q = torch.sigmoid(torch.einsum("boi,bi->bo", weight, q) + bias)  # (B, out)
    return (torch.einsum("boi,bi->bo", params.fc5w, q) + params.fc5b)[:, 0]  # (B,)


class HyperNet(nn.Module):
    """The official ``HyperNet`` (module and key names kept): backbone ``res``, 1x1 ``conv1`` stack, and the
    heads ``fcKw_conv`` (3x3 convs whose outputs are reshaped into weight matrices) and ``fcKb_fc`` (biases)."""

    def __init__(self, config: HyperIQAConfig = HyperIQAConfig()):
        super().__init__()
        self.config = c = config
        hyper, fs2 = c.hyper_in_channels, c.feature_size**2
        self.res = ResNetBackbone(c)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.conv1 = nn.Sequential(
            nn.Conv2d(2048, 1024, 1), nn.ReLU(inplace=True),
            nn.Conv2d(1024, 512, 1), nn.ReLU(inplace=True),
            nn.Conv2d(512, hyper, 1), nn.ReLU(inplace=True),
        )  # fmt: skip
        # A (C, 7, 7) conv output holds out*in values when C = out * in / 49 (e.g. 224 * 112 / 49 = 512 channels).
        sizes = [c.target_in_size, c.target_fc1_size, c.target_fc2_size, c.target_fc3_size, c.target_fc4_size]
        for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            setattr(self, f"fc{k}w_conv", nn.Conv2d(hyper, fan_in * fan_out // fs2, 3, padding=1))
            setattr(self, f"fc{k}b_fc", nn.Linear(hyper, fan_out))
        self.fc5w_fc = nn.Linear(hyper, c.target_fc4_size)
        self.fc5b_fc = nn.Linear(hyper, 1)

    def target_params(self, hyper_in_feat: torch.Tensor) -> TargetParams:
        """Features after ``conv1`` (B, 112, 7, 7) -> the target network's weights and biases."""
        c = self.config
        b = hyper_in_feat.shape[0]
        pooled = self.pool(hyper_in_feat).flatten(1)  # (B, 112)
        sizes = [c.target_in_size, c.target_fc1_size, c.target_fc2_size, c.target_fc3_size, c.target_fc4_size]
        values = {}
        for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            conv_out = getattr(self, f"fc{k}w_conv")(hyper_in_feat)  # (B, C, 7, 7), reshaped in C order
            values[f"fc{k}w"] = conv_out.reshape(b, fan_out, fan_in)
            values[f"fc{k}b"] = getattr(self, f"fc{k}b_fc")(pooled)  # (B, out)
        values["fc5w"] = self.fc5w_fc(pooled).reshape(b, 1, c.target_fc4_size)
        values["fc5b"] = self.fc5b_fc(pooled)  # (B, 1)
        return TargetParams(**values)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, 224, 224) -> quality scores (B,) (0-100 with the KonIQ weights)."""
        if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"hyperIQA needs {INPUT_SIZE}x{INPUT_SIZE} inputs, got {tuple(images.shape)}")
        features, target_in_vec = self.res(images)
        params = self.target_params(self.conv1(features))  # (B, 112, 7, 7) -> per-image MLPs
        return target_net(target_in_vec, params)


def preprocess_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 RGB frames (B, H, W, 3), H and W >= 224 -> the filter's input (B, 3, 224, 224): /255, centre crop
    224 without resizing (offset round((H - 224) / 2), torchvision's CenterCrop), ImageNet normalisation."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[1:3]) < INPUT_SIZE:
        raise ValueError(f"frames must be (B, H, W, 3) with H, W >= {INPUT_SIZE}, got {tuple(frames.shape)}")
    height, width = frames.shape[1:3]
    top, left = int(round((height - INPUT_SIZE) / 2)), int(round((width - INPUT_SIZE) / 2))
    crop = frames[:, top : top + INPUT_SIZE, left : left + INPUT_SIZE].permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=crop.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=crop.device).view(1, 3, 1, 1)
    return (crop - mean) / std  # (B, 3, 224, 224)


def load_hyperiqa(path: str | os.PathLike, device: torch.device | str = "cpu") -> HyperNet:
    """Build :class:`HyperNet` and load ``koniq_pretrained.pkl`` (a plain state_dict) strictly, in eval mode."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files ...
        raise CheckpointError(f"could not read the hyperIQA checkpoint {path}: {err}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    with torch.device("meta"):
        model = HyperNet()
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} is not a hyperIQA (KonIQ) checkpoint: {err}") from err
    return model.float().to(device).eval().requires_grad_(False)


def random_hyperiqa_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the official checkpoint's format (all 355 entries), for tests and benchmarks: the
    constructor's default initialisation from a seeded generator, BatchNorm statistics made non-trivial."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in HyperNet().state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros((), dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = torch.rand(tensor.shape, generator=generator) + 0.5
        elif name.endswith("running_mean"):
            state[name] = 0.1 * torch.randn(tensor.shape, generator=generator)
        elif tensor.ndim > 1:  # keep activations at their input scale
            state[name] = torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5
        elif name.endswith("weight"):
            state[name] = 1 + 0.1 * torch.randn(tensor.shape, generator=generator)
        else:
            state[name] = 0.1 * torch.randn(tensor.shape, generator=generator)
    return state
