"""OpenAI's Whisper checkpoint format: dims, key names and shapes, the key map to transformers' encoder,
reading, and writing random-weight files for tests (``{"dims": {...}, "model_state_dict": {...}}``).

Split from :mod:`latentsync.models.whisper` (which re-exports these names): this module knows the file
format, that one computes features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers.models.whisper.modeling_whisper import sinusoids

from latentsync.errors import CheckpointError

OPENAI_DECODER_KEYS_PER_BLOCK = 24  # attn 7 + attn_ln 2 + cross_attn 7 + cross_attn_ln 2 + mlp 4 + mlp_ln 2


@dataclass(frozen=True)
class WhisperDims:
    """OpenAI's ``ModelDimensions``: stored as a plain dict under ``dims`` in the checkpoint."""

    n_mels: int  # mel bands of the input spectrogram
    n_audio_ctx: int  # encoder steps per 30-s window (1500)
    n_audio_state: int  # encoder width d (384 for tiny) = LatentSync's cross_attention_dim
    n_audio_head: int  # encoder attention heads
    n_audio_layer: int  # encoder blocks (4 for tiny → 5 hidden states)
    n_vocab: int  # text side, unused here but part of the checkpoint's shapes
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    @classmethod
    def from_mapping(cls, values: Mapping[str, int]) -> WhisperDims:
        names = {field.name for field in dataclasses.fields(cls)}
        missing, extra = names - set(values), set(values) - names
        if missing or extra:
            raise CheckpointError(
                f"Whisper checkpoint 'dims' does not match OpenAI's ModelDimensions: "
                f"missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        return cls(**{name: int(values[name]) for name in names})

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


_BLOCK_KEY_MAP = {  # OpenAI ResidualAttentionBlock name → transformers WhisperEncoderLayer name
    "attn.query.weight": "self_attn.q_proj.weight",
    "attn.query.bias": "self_attn.q_proj.bias",
    "attn.key.weight": "self_attn.k_proj.weight",  # the key projection has no bias in either
    "attn.value.weight": "self_attn.v_proj.weight",
    "attn.value.bias": "self_attn.v_proj.bias",
    "attn.out.weight": "self_attn.out_proj.weight",
    "attn.out.bias": "self_attn.out_proj.bias",
    "attn_ln.weight": "self_attn_layer_norm.weight",
    "attn_ln.bias": "self_attn_layer_norm.bias",
    "mlp.0.weight": "fc1.weight",
    "mlp.0.bias": "fc1.bias",
    "mlp.2.weight": "fc2.weight",
    "mlp.2.bias": "fc2.bias",
    "mlp_ln.weight": "final_layer_norm.weight",
    "mlp_ln.bias": "final_layer_norm.bias",
}
_STEM_KEY_MAP = {
    "conv1.weight": "conv1.weight",
    "conv1.bias": "conv1.bias",
    "conv2.weight": "conv2.weight",
    "conv2.bias": "conv2.bias",
    "positional_embedding": "embed_positions.weight",  # a persistent buffer in OpenAI's encoder
    "ln_post.weight": "layer_norm.weight",  # loaded for strictness; LatentSync never uses ln_post
    "ln_post.bias": "layer_norm.bias",
}


def encoder_key_map(n_layer: int) -> dict[str, str]:
    """OpenAI checkpoint key (``encoder.…``) → ``WhisperEncoder`` state-dict key; 7 + 15·n_layer entries."""
    key_map = {f"encoder.{src}": dst for src, dst in _STEM_KEY_MAP.items()}
    for i in range(n_layer):
        key_map.update(
            {f"encoder.blocks.{i}.{src}": f"layers.{i}.{dst}" for src, dst in _BLOCK_KEY_MAP.items()}
        )
    assert len(key_map) == len(_STEM_KEY_MAP) + len(_BLOCK_KEY_MAP) * n_layer
    return key_map


def _block_shapes(prefix: str, width: int, cross_attention: bool) -> dict[str, tuple[int, ...]]:
    mlp_width = 4 * width  # OpenAI's n_mlp = 4 · n_state
    attn = {
        "query.weight": (width, width),
        "query.bias": (width,),
        "key.weight": (width, width),
        "value.weight": (width, width),
        "value.bias": (width,),
        "out.weight": (width, width),
        "out.bias": (width,),
    }
    names = ["attn"] + (["cross_attn"] if cross_attention else [])
    shapes = {f"{prefix}{name}.{k}": v for name in names for k, v in attn.items()}
    for norm in [f"{name}_ln" for name in names] + ["mlp_ln"]:
        shapes.update({f"{prefix}{norm}.weight": (width,), f"{prefix}{norm}.bias": (width,)})
    shapes.update(
        {
            f"{prefix}mlp.0.weight": (mlp_width, width),
            f"{prefix}mlp.0.bias": (mlp_width,),
            f"{prefix}mlp.2.weight": (width, mlp_width),
            f"{prefix}mlp.2.bias": (width,),
        }
    )
    return shapes


def openai_encoder_shapes(dims: WhisperDims) -> dict[str, tuple[int, ...]]:
    """Every ``encoder.*`` entry of an OpenAI Whisper state dict with its shape."""
    d = dims.n_audio_state
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.conv1.weight": (d, dims.n_mels, 3),
        "encoder.conv1.bias": (d,),
        "encoder.conv2.weight": (d, d, 3),
        "encoder.conv2.bias": (d,),
        "encoder.positional_embedding": (dims.n_audio_ctx, d),
        "encoder.ln_post.weight": (d,),
        "encoder.ln_post.bias": (d,),
    }
    for i in range(dims.n_audio_layer):
        shapes.update(_block_shapes(f"encoder.blocks.{i}.", d, cross_attention=False))
    return shapes


def openai_decoder_shapes(dims: WhisperDims) -> dict[str, tuple[int, ...]]:
    """Every ``decoder.*`` entry of an OpenAI Whisper state dict (the text side we ignore) with its shape."""
    d = dims.n_text_state
    shapes: dict[str, tuple[int, ...]] = {
        "decoder.token_embedding.weight": (dims.n_vocab, d),
        "decoder.positional_embedding": (dims.n_text_ctx, d),
        "decoder.ln.weight": (d,),
        "decoder.ln.bias": (d,),
    }
    for i in range(dims.n_text_layer):
        shapes.update(_block_shapes(f"decoder.blocks.{i}.", d, cross_attention=True))
    assert len(shapes) == 4 + OPENAI_DECODER_KEYS_PER_BLOCK * dims.n_text_layer
    return shapes


def encoder_state_dict_from_openai(
    state_dict: Mapping[str, torch.Tensor], dims: WhisperDims
) -> dict[str, torch.Tensor]:
    """Rename an OpenAI Whisper state dict to ``WhisperEncoder`` keys, checking names, counts and shapes.

    The decoder's entries must be either all present (the official file) or all absent; they are dropped.
    """
    encoder_shapes, decoder_shapes = openai_encoder_shapes(dims), openai_decoder_shapes(dims)
    keys = set(state_dict)
    unexpected = keys - set(encoder_shapes) - set(decoder_shapes)
    missing = set(encoder_shapes) - keys
    if unexpected or missing:
        raise CheckpointError(
            f"Whisper checkpoint does not match dims {dims.as_dict()}: missing {sorted(missing)[:8]}"
            f" ({len(missing)}), unexpected {sorted(unexpected)[:8]} ({len(unexpected)})"
        )
    n_decoder = len(keys & set(decoder_shapes))
    if n_decoder not in (0, len(decoder_shapes)):
        raise CheckpointError(
            f"Whisper checkpoint has {n_decoder} of the {len(decoder_shapes)} text-decoder entries"
            " (expected all or none)"
        )
    for name, shape in {**encoder_shapes, **decoder_shapes}.items():
        if name in state_dict and tuple(state_dict[name].shape) != shape:
            raise CheckpointError(
                f"Whisper checkpoint entry {name} has shape {tuple(state_dict[name].shape)}, expected {shape}"
            )
    key_map = encoder_key_map(dims.n_audio_layer)
    assert set(key_map) == set(encoder_shapes)
    return {dst: state_dict[src] for src, dst in key_map.items()}


def load_openai_checkpoint(path: str | Path) -> tuple[WhisperDims, dict[str, torch.Tensor]]:
    """Read ``{"dims": dict, "model_state_dict": dict}`` with ``weights_only=True`` (no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Whisper checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated download, an HTML error page, a non-OpenAI pickle
        raise CheckpointError(f"cannot read Whisper checkpoint {path}: {err}") from err
    if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= set(checkpoint):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path} is not an OpenAI Whisper checkpoint (needs 'dims' and 'model_state_dict'; found {found})"
        )
    return WhisperDims.from_mapping(checkpoint["dims"]), dict(checkpoint["model_state_dict"])


def write_random_whisper_checkpoint(
    path: str | Path, dims: Mapping[str, int] | WhisperDims, seed: int, dtype: torch.dtype = torch.float32
) -> Path:
    """Write a random-weight Whisper in the official OpenAI format (encoder random, decoder zeros), for tests.

    Weights are ``randn / sqrt(fan_in)``, layer-norm scales ``1 + 0.1·randn``, biases ``0.1·randn``, all from
    ``torch.Generator().manual_seed(seed)``; the positional embedding is OpenAI's sinusoid table.
    """
    dims = dims if isinstance(dims, WhisperDims) else WhisperDims.from_mapping(dims)
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, shape in openai_encoder_shapes(dims).items():
        if name == "encoder.positional_embedding":
            value = sinusoids(*shape)
        elif len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            value = torch.randn(shape, generator=generator) / fan_in**0.5
        elif "_ln." in name or "ln_post." in name:
            value = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            value = 0.1 * torch.randn(shape, generator=generator)
        state[name] = value.to(dtype)
    state.update(
        {name: torch.zeros(shape, dtype=dtype) for name, shape in openai_decoder_shapes(dims).items()}
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims.as_dict(), "model_state_dict": state}, path)
    return path
