"""GFPGAN v1.4 (Wang et al., CVPR 2021; Apache-2.0): the face restorer applied after paste-back.

Written here from the reference notes (README §16 of the reference facts) in plain torch, without the ``gfpgan`` /
``basicsr`` packages (both import torchvision) and without custom CUDA ops ("clean" variant). Two halves:

* a U-Net over the degraded face: an encoder of down-sampling residual blocks to a 4 x 4 map, whose flattened
  features give one style vector per decoder layer (``final_linear``), and a decoder of up-sampling residual blocks
  whose feature at each resolution yields an SFT scale and shift (``condition_scale`` / ``condition_shift``);
* a StyleGAN2 generator (``stylegan_decoder``) driven by those style vectors, in which half of the channels after
  the first convolution of every resolution are modulated by the SFT conditions (``sft_half``).

The generator adds per-pixel noise after every convolution. :meth:`GFPGAN.forward` uses the noise buffers stored in
the checkpoint unless it is given other fixed noise: the same face gives the same restoration in every frame. (The
reference helper draws fresh noise per call, one cause of the lip jitter its users report.)

:func:`load_gfpgan` reads ``GFPGANv1.4.pth`` (``params_ema``: 285 tensors) strictly.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from latentsync.errors import CheckpointError

LEAKY_SLOPE = 0.2
MODULATED_GAIN = math.sqrt(2.0)  # StyleConv's gain that keeps the leaky-ReLU's variance
DEMODULATION_EPS = 1e-8
STATE_DICT_KEY = "params_ema"  # GFPGANv1.4.pth: {"params_ema": state_dict}
FIRST_SIZE = 4  # the generator's constant input and the encoder's bottleneck are 4 x 4


@dataclass(frozen=True)
class GFPGANConfig:
    """``GFPGANv1Clean``'s constructor arguments (defaults: v1.4). ``input_is_latent``, ``different_w`` and
    ``sft_half`` are True for v1.4 and the only variant written here."""

    out_size: int = 512  # side of the input and output face (a power of two)
    num_style_feat: int = 512  # width of each style vector
    channel_multiplier: int = 2  # widens the generator at 64 px and above
    num_mlp: int = 8  # layers of the style MLP (stored in the checkpoint, unused with latent inputs)
    narrow: float = 1.0  # scales every width (the U-Net uses half of it)

    @property
    def log_size(self) -> int:
        return int(math.log2(self.out_size))

    @property
    def num_latent(self) -> int:
        """Style vectors: two per resolution from 4 px up, 8 -> out_size (conv, conv, to-RGB share)."""
        return self.log_size * 2 - 2

    @property
    def num_noise(self) -> int:
        """Noise inputs: one at 4 px, two per resolution above."""
        return (self.log_size - 2) * 2 + 1

    def channels(self, narrow: float) -> dict[int, int]:
        """Feature width at each resolution (StyleGAN2's table)."""
        m = self.channel_multiplier
        return {
            4: int(512 * narrow),
            8: int(512 * narrow),
            16: int(512 * narrow),
            32: int(512 * narrow),
            64: int(256 * m * narrow),
            128: int(128 * m * narrow),
            256: int(64 * m * narrow),
            512: int(32 * m * narrow),
            1024: int(16 * m * narrow),
        }

    @classmethod
    def from_dict(cls, values: dict) -> GFPGANConfig:
        """Read a ``GFPGANv1Clean`` keyword dict (extra keys of that constructor checked, then ignored)."""
        fixed = {"input_is_latent": True, "different_w": True, "sft_half": True}
        for key, wanted in fixed.items():
            if key in values and values[key] != wanted:
                raise ValueError(f"GFPGANConfig supports {key}={wanted} only, got {values[key]!r}")
        fields = {f for f in asdict(cls())}
        return cls(**{k: v for k, v in values.items() if k in fields})


def tiny_gfpgan_config() -> GFPGANConfig:
    """The reference golden's tiny network (64 px, 32-d styles, 1/16 of the widths): tests, benchmarks, smoke mode."""
    return GFPGANConfig(out_size=64, num_style_feat=32, channel_multiplier=1, num_mlp=2, narrow=0.0625)


def _upsample(x: torch.Tensor, factor: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class ResBlock(nn.Module):
    """conv3x3 -> lrelu -> resample -> conv3x3 -> lrelu, plus a resampled 1x1 skip (no bias)."""

    def __init__(self, in_channels: int, out_channels: int, factor: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), LEAKY_SLOPE)
        out = F.leaky_relu(self.conv2(_upsample(out, self.factor)), LEAKY_SLOPE)
        return out + self.skip(_upsample(x, self.factor))


class ModulatedConv2d(nn.Module):
    """StyleGAN2's convolution: one weight per sample, scaled by its style (and demodulated)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.modulation = nn.Linear(num_style_feat, in_channels)
        nn.init.ones_(self.modulation.bias)
        fan_in = in_channels * kernel_size**2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size) / fan_in**0.5)
        self.demodulate = demodulate
        self.upsample = upsample

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, c_in = x.shape[:2]
        weight = self.weight * self.modulation(style).view(b, 1, c_in, 1, 1)  # (b, c_out, c_in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + DEMODULATION_EPS)
        c_out, k = weight.shape[1], weight.shape[-1]
        if self.upsample:
            x = _upsample(x, 2)
        h, w = x.shape[-2:]
        out = F.conv2d(x.reshape(1, b * c_in, h, w), weight.reshape(b * c_out, c_in, k, k), padding=k // 2, groups=b)
        return out.view(b, c_out, h, w)


class StyleConv(nn.Module):
    """Modulated conv, scaled noise, bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, num_style_feat: int, upsample: bool = False):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, 3, num_style_feat, upsample=upsample)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.modulated_conv(x, style) * MODULATED_GAIN
        return F.leaky_relu(out + self.weight * noise + self.bias, LEAKY_SLOPE)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB, added to the up-sampled RGB of the previous resolution."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample_skip: bool = True):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample_skip = upsample_skip

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            out = out + (_upsample(skip, 2) if self.upsample_skip else skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.expand(batch, -1, -1, -1)


class NormStyleCode(nn.Module):
    """Divide a style code by its root mean square (the style MLP's first layer, no weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + DEMODULATION_EPS)


class StyleGAN2DecoderSFT(nn.Module):
    """StyleGAN2 generator whose first conv per resolution is followed by SFT on half of its channels."""

    def __init__(self, config: GFPGANConfig):
        super().__init__()
        style = config.num_style_feat
        channels = config.channels(config.narrow)
        mlp: list[nn.Module] = [NormStyleCode()]
        for _ in range(config.num_mlp):  # kept for the checkpoint's keys; latent inputs skip it
            mlp += [nn.Linear(style, style), nn.LeakyReLU(LEAKY_SLOPE)]
        self.style_mlp = nn.Sequential(*mlp)
        self.constant_input = ConstantInput(channels[FIRST_SIZE], FIRST_SIZE)
        self.style_conv1 = StyleConv(channels[FIRST_SIZE], channels[FIRST_SIZE], style)
        self.to_rgb1 = ToRGB(channels[FIRST_SIZE], style, upsample_skip=False)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = channels[FIRST_SIZE]
        for level in range(3, config.log_size + 1):
            out_channels = channels[2**level]
            self.style_convs.append(StyleConv(in_channels, out_channels, style, upsample=True))
            self.style_convs.append(StyleConv(out_channels, out_channels, style))
            self.to_rgbs.append(ToRGB(out_channels, style))
            in_channels = out_channels
        self.noises = nn.Module()
        for index in range(config.num_noise):  # 4, 8, 8, 16, 16, ... px
            side = 2 ** ((index + 5) // 2)
            self.noises.register_buffer(f"noise{index}", torch.randn(1, 1, side, side))

    def forward(self, latent: torch.Tensor, conditions: list[torch.Tensor], noise: list[torch.Tensor]) -> torch.Tensor:
        """latent (b, num_latent, style); conditions [scale, shift] per resolution from 8 px; noise per layer."""
        out = self.constant_input(latent.shape[0])  # (b, c, 4, 4)
        out = self.style_conv1(out, latent[:, 0], noise[0])
        rgb = self.to_rgb1(out, latent[:, 1])
        for level, to_rgb in enumerate(self.to_rgbs):
            i = 2 * level + 1  # latent / noise index of this resolution's first conv
            out = self.style_convs[2 * level](out, latent[:, i], noise[i])
            scale, shift = conditions[2 * level], conditions[2 * level + 1]
            kept, modulated = out.chunk(2, dim=1)  # SFT on the second half of the channels only
            out = torch.cat([kept, modulated * scale + shift], dim=1)
            out = self.style_convs[2 * level + 1](out, latent[:, i + 1], noise[i + 1])
            rgb = to_rgb(out, latent[:, i + 2], rgb)
        return rgb


def _sft_branch(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(LEAKY_SLOPE), nn.Conv2d(channels, channels, 3, padding=1)
    )


class GFPGAN(nn.Module):
    """``GFPGANv1Clean`` under its checkpoint's parameter names: (b, 3, S, S) in [-1, 1] -> restored faces."""

    def __init__(self, config: GFPGANConfig = GFPGANConfig()):
        super().__init__()
        self.config = config
        log_size = config.log_size
        channels = config.channels(config.narrow * 0.5)  # the U-Net is half as wide as the generator
        self.conv_body_first = nn.Conv2d(3, channels[config.out_size], 1)
        self.conv_body_down = nn.ModuleList()
        in_channels = channels[config.out_size]
        for level in range(log_size, 2, -1):  # out_size -> 4 px
            self.conv_body_down.append(ResBlock(in_channels, channels[2 ** (level - 1)], factor=0.5))
            in_channels = channels[2 ** (level - 1)]
        self.final_conv = nn.Conv2d(in_channels, channels[FIRST_SIZE], 3, padding=1)
        self.conv_body_up = nn.ModuleList()
        self.toRGB = nn.ModuleList()
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        in_channels = channels[FIRST_SIZE]
        for level in range(3, log_size + 1):  # 8 px -> out_size
            out_channels = channels[2**level]
            self.conv_body_up.append(ResBlock(in_channels, out_channels, factor=2))
            self.toRGB.append(nn.Conv2d(out_channels, 3, 1))
            self.condition_scale.append(_sft_branch(out_channels))
            self.condition_shift.append(_sft_branch(out_channels))
            in_channels = out_channels
        self.final_linear = nn.Linear(channels[FIRST_SIZE] * FIRST_SIZE**2, config.num_latent * config.num_style_feat)
        self.stylegan_decoder = StyleGAN2DecoderSFT(config)

    def stored_noise(self) -> list[torch.Tensor]:
        """The checkpoint's fixed noise, one (1, 1, s, s) map per generator layer."""
        return [getattr(self.stylegan_decoder.noises, f"noise{i}") for i in range(self.config.num_noise)]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """x (b, 3, S, S) -> latent (b, num_latent, style), SFT conditions, intermediate RGB (8 px .. S)."""
        feat = F.leaky_relu(self.conv_body_first(x), LEAKY_SLOPE)
        skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.insert(0, feat)  # smallest first
        feat = F.leaky_relu(self.final_conv(feat), LEAKY_SLOPE)  # (b, c, 4, 4)
        latent = self.final_linear(feat.flatten(1)).view(x.shape[0], -1, self.config.num_style_feat)
        conditions, rgbs = [], []
        for skip, up, scale, shift, to_rgb in zip(
            skips, self.conv_body_up, self.condition_scale, self.condition_shift, self.toRGB
        ):
            feat = up(feat + skip)
            conditions += [scale(feat), shift(feat)]
            rgbs.append(to_rgb(feat))
        return latent, conditions, rgbs

    def forward(self, x: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x (b, 3, S, S) in [-1, 1] -> (b, 3, S, S), not clamped. ``noise``: one map per generator layer
        (broadcast over the batch); None uses the stored buffers, so equal inputs give equal outputs."""
        size = self.config.out_size
        if x.shape[1:] != (3, size, size):
            raise ValueError(f"GFPGAN expects (b, 3, {size}, {size}) inputs, got {tuple(x.shape)}")
        latent, conditions, _ = self.encode(x)
        return self.stylegan_decoder(latent, conditions, self.stored_noise() if noise is None else noise)


def config_from_state_dict(state: dict, path: str | os.PathLike = "the checkpoint") -> GFPGANConfig:
    """The :class:`GFPGANConfig` whose network has these tensors' shapes (v1.4's for ``GFPGANv1.4.pth``, a tiny
    one for the test files), read from a few telling entries; the strict load then checks every other one."""
    try:
        levels = sum(1 for name in state if name.startswith("toRGB.") and name.endswith(".weight"))
        width = state["stylegan_decoder.constant_input.weight"].shape[1]  # int(512 * narrow)
        num_style_feat = state["stylegan_decoder.to_rgb1.modulated_conv.modulation.weight"].shape[1]
        num_mlp = sum(1 for name in state if name.startswith("stylegan_decoder.style_mlp.") and name.endswith(".weight"))
        narrow = width / 512
        multiplier = 1
        if levels >= 4:  # the 64 px level exists: its width is int(256 * multiplier * narrow)
            multiplier = round(state["stylegan_decoder.to_rgbs.3.modulated_conv.weight"].shape[2] / (256 * narrow))
    except (KeyError, AttributeError, IndexError, TypeError) as err:
        raise CheckpointError(f"{path} is not a GFPGAN v1.4 checkpoint: no {err} entry of the expected shape") from err
    return GFPGANConfig(out_size=2 ** (levels + 2), num_style_feat=int(num_style_feat),
                        channel_multiplier=multiplier, num_mlp=num_mlp, narrow=narrow)


def load_gfpgan(path: str | os.PathLike, config: GFPGANConfig | None = None,
                device: torch.device | str = "cpu") -> GFPGAN:
    """Build :class:`GFPGAN` and load ``GFPGANv1.4.pth`` (``{"params_ema": state_dict}``, or a bare state dict)
    strictly, in eval mode. ``config`` defaults to the one the tensors' shapes imply (v1.4's for the real file)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files ...
        raise CheckpointError(f"could not read the GFPGAN checkpoint {path}: {err}") from err
    if not isinstance(blob, dict):
        raise CheckpointError(f"{path} is not a GFPGAN checkpoint: it holds a {type(blob).__name__}, not a dict")
    state = blob.get(STATE_DICT_KEY, blob)
    if config is None:
        config = config_from_state_dict(state, path)
    with torch.device("meta"):
        model = GFPGAN(config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} is not a GFPGAN v1.4 checkpoint for {config}: {err}") from err
    return model.float().to(device).eval().requires_grad_(False)


def random_gfpgan_state_dict(config: GFPGANConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the checkpoint's format for tests and benchmarks: every tensor drawn from a seeded
    generator at a scale that keeps activations near unit size (no zero-initialised layer hides a wiring error)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {name: t.shape for name, t in GFPGAN(config).state_dict().items()}
    state = {}
    for name, shape in shapes.items():
        draw = torch.randn(shape, generator=generator)
        if ".noises." in name or name.endswith("constant_input.weight"):
            state[name] = draw
        elif name.endswith("modulation.bias"):
            state[name] = 1 + 0.1 * draw
        elif name.endswith("modulated_conv.weight"):
            state[name] = draw / shape[2:].numel() ** 0.5
        elif len(shape) > 1:
            state[name] = draw / shape[1:].numel() ** 0.5
        else:
            state[name] = 0.1 * draw
    return state
