"""Typed configuration of the LatentSync audio-conditioned 3-D UNet (no torch import: cheap to import).

Field names and values mirror the official ``UNet3DConditionModel`` config (reference README §3.1), so an
official ``model:`` section or the tiny golden's ``constructor_kwargs`` load with
:meth:`UNetConfig.from_dict`.
LatentSync 1.5 and 1.6 share one architecture and one set of weight names; they differ only in the face
``resolution`` the net was trained at (256 vs 512 px), which is kept beside the net's own values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Face crop sizes the released checkpoints were trained at (the VAE turns them into 32x32 / 64x64 latents).
LATENTSYNC_15_RESOLUTION = 256
LATENTSYNC_16_RESOLUTION = 512

CROSS_ATTN_DOWN_BLOCK = "CrossAttnDownBlock3D"
PLAIN_DOWN_BLOCK = "DownBlock3D"
CROSS_ATTN_UP_BLOCK = "CrossAttnUpBlock3D"
PLAIN_UP_BLOCK = "UpBlock3D"
MID_BLOCK = "UNetMidBlock3DCrossAttn"
TEMPORAL_SELF_ATTENTION = "Temporal_Self"

# The official UNet hard-codes the up blocks' motion-module "resolution" as 2**(3 - i), i.e. 4 levels.
NUM_LEVELS = 4


@dataclass(frozen=True)
class MotionModuleConfig:
    """AnimateDiff "Vanilla" temporal module settings (official ``motion_module_kwargs``)."""

    num_attention_heads: int = 8  # heads of each temporal self-attention (head dim = C / heads / div)
    num_transformer_block: int = 1  # TemporalTransformerBlocks per motion module
    attention_block_types: tuple[str, ...] = (TEMPORAL_SELF_ATTENTION, TEMPORAL_SELF_ATTENTION)
    temporal_position_encoding: bool = True  # sinusoidal PE added to each attention's input
    temporal_position_encoding_max_len: int = 24  # PE length = most frames one UNet call can take
    temporal_attention_dim_div: int = 1  # divides the per-head width
    zero_initialize: bool = True  # proj_out starts at zero (fresh modules are an identity)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MotionModuleConfig:
        values = dict(values)
        if "attention_block_types" in values:
            values["attention_block_types"] = tuple(values["attention_block_types"])
        return cls(**_known_fields(cls, values, "motion_module_kwargs"))


@dataclass(frozen=True)
class UNetConfig:
    """Every value of the official UNet config; defaults are LatentSync 1.5 (``configs/unet/stage2.yaml``)."""

    sample_size: int = 64  # unused by the net (height/width come from the input)
    in_channels: int = 13  # noisy latent 4 | mask 1 | masked-image latent 4 | reference latent 4
    out_channels: int = 4  # predicted noise (epsilon)
    center_input_sample: bool = False  # if true the input is mapped x -> 2x - 1 first
    flip_sin_to_cos: bool = True  # timestep embedding is [cos | sin]
    freq_shift: int = 0  # downscale_freq_shift of the sinusoidal timestep embedding
    down_block_types: tuple[str, ...] = (CROSS_ATTN_DOWN_BLOCK,) * 3 + (PLAIN_DOWN_BLOCK,)
    mid_block_type: str = MID_BLOCK
    up_block_types: tuple[str, ...] = (PLAIN_UP_BLOCK,) + (CROSS_ATTN_UP_BLOCK,) * 3
    only_cross_attention: bool = False
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2  # down blocks; up blocks use one more
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0  # mid-block ResNet outputs are divided by this
    act_fn: str = "silu"
    norm_num_groups: int = 32  # ResNet, spatial-transformer and conv_norm_out GroupNorms
    norm_eps: float = 1e-5  # ResNet and conv_norm_out GroupNorm eps
    cross_attention_dim: int = 384  # audio token width (Whisper tiny)
    attention_head_dim: int = 8  # legacy diffusers meaning: the NUMBER of heads (head dim = C / 8)
    dual_cross_attention: bool = False
    use_linear_projection: bool = False
    class_embed_type: str | None = None
    num_class_embeds: int | None = None
    upcast_attention: bool = False
    resnet_time_scale_shift: str = "default"
    use_inflated_groupnorm: bool = False  # false: ResNet GroupNorm spans all frames of a call jointly
    use_motion_module: bool = True
    motion_module_resolutions: tuple[int, ...] = (1, 2, 4, 8)  # levels (2**i) that get motion modules
    motion_module_mid_block: bool = False
    motion_module_decoder_only: bool = False
    motion_module_type: str = "Vanilla"
    motion_module_kwargs: MotionModuleConfig = field(default_factory=MotionModuleConfig)
    add_audio_layer: bool = True  # creates norm2/attn2 (audio cross-attention) in every spatial block
    # Not part of the official model section: the face crop size (data.resolution) the weights were trained
    # at. It does not change the network.
    resolution: int = LATENTSYNC_15_RESOLUTION

    def __post_init__(self) -> None:
        unsupported = {
            "only_cross_attention": (self.only_cross_attention, False),
            "dual_cross_attention": (self.dual_cross_attention, False),
            "use_linear_projection": (self.use_linear_projection, False),
            "class_embed_type": (self.class_embed_type, None),
            "num_class_embeds": (self.num_class_embeds, None),
            "upcast_attention": (self.upcast_attention, False),
            "resnet_time_scale_shift": (self.resnet_time_scale_shift, "default"),
            "mid_block_type": (self.mid_block_type, MID_BLOCK),
            "motion_module_type": (self.motion_module_type, "Vanilla"),
            "motion_module_mid_block": (self.motion_module_mid_block, False),
            "downsample_padding": (self.downsample_padding, 1),
        }
        for name, (value, supported) in unsupported.items():
            if value != supported:
                raise ValueError(f"UNetConfig.{name}={value!r} is not supported (only {supported!r}; "
                                 "no released LatentSync config uses another value)")
        if self.act_fn not in ("silu", "swish"):
            raise ValueError(f"UNetConfig.act_fn must be 'silu', got {self.act_fn!r}")
        if not isinstance(self.attention_head_dim, int):
            raise ValueError(f"UNetConfig.attention_head_dim must be one int (the number of heads), "
                             f"got {self.attention_head_dim!r}")
        n_levels = (len(self.block_out_channels), len(self.down_block_types), len(self.up_block_types))
        if n_levels != (NUM_LEVELS,) * 3:
            raise ValueError(f"UNetConfig needs {NUM_LEVELS} levels (block_out_channels, down_block_types, "
                             f"up_block_types), got lengths {n_levels}")
        if not set(self.down_block_types) <= {CROSS_ATTN_DOWN_BLOCK, PLAIN_DOWN_BLOCK}:
            raise ValueError(f"unknown down_block_types {self.down_block_types!r}")
        if not set(self.up_block_types) <= {CROSS_ATTN_UP_BLOCK, PLAIN_UP_BLOCK}:
            raise ValueError(f"unknown up_block_types {self.up_block_types!r}")
        if set(self.motion_module_kwargs.attention_block_types) != {TEMPORAL_SELF_ATTENTION}:
            raise ValueError("motion_module_kwargs.attention_block_types must all be 'Temporal_Self', got "
                             f"{self.motion_module_kwargs.attention_block_types!r}")

    # ---- presets -------------------------------------------------------------------------------------
    @classmethod
    def latentsync_15(cls) -> UNetConfig:
        """LatentSync 1.5: ``configs/unet/stage2.yaml`` (256 px faces, 32x32 latents)."""
        return cls(resolution=LATENTSYNC_15_RESOLUTION)

    @classmethod
    def latentsync_16(cls) -> UNetConfig:
        """LatentSync 1.6: ``configs/unet/stage2_512.yaml``, the same net trained on 512 px faces."""
        return cls(resolution=LATENTSYNC_16_RESOLUTION)

    # ---- (de)serialisation ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> UNetConfig:
        """Build from an official ``model:`` section (or our :meth:`to_dict`); missing keys take 1.5 values.

        Unknown keys raise ``ValueError`` naming them, so a typo cannot be silently ignored.
        """
        values = dict(values)
        for name in ("down_block_types", "up_block_types", "block_out_channels", "motion_module_resolutions"):
            if name in values:
                values[name] = tuple(values[name])
        if isinstance(values.get("motion_module_kwargs"), dict):
            values["motion_module_kwargs"] = MotionModuleConfig.from_dict(values["motion_module_kwargs"])
        heads = values.get("attention_head_dim")
        if isinstance(heads, (list, tuple)) and len(set(heads)) == 1:  # per-level list with one value
            values["attention_head_dim"] = heads[0]
        return cls(**_known_fields(cls, values, "UNetConfig"))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists for tuples) that :meth:`from_dict` reads back."""
        return _jsonable(dataclasses.asdict(self))


def tiny_unet_config() -> UNetConfig:
    """The tiny golden's net (``tiny_unet_config.json``): full 4-down/4-up topology, widths 32/32/64/64.

    3,584,676 parameters; used by tests and the app's smoke mode. Values identical to the JSON's
    ``constructor_kwargs`` (the 32-group motion-module GroupNorm still fits widths 32 and 64).
    """
    return UNetConfig(
        sample_size=16,
        block_out_channels=(32, 32, 64, 64),
        norm_num_groups=8,
        cross_attention_dim=24,
        attention_head_dim=2,
        motion_module_kwargs=MotionModuleConfig(num_attention_heads=2),
        resolution=128,  # 16x16 latents; only a label, the tiny net has no training resolution
    )


def _known_fields(cls: type, values: dict[str, Any], what: str) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{what}: unknown keys {unknown} (known: {sorted(names)})")
    return values


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
