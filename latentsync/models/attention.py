"""The per-frame spatial transformer (self-attention + audio cross-attention) and the temporal attention.

Both are diffusers building blocks whose parameter names and maths equal the official checkpoint's:

* ``SpatialTransformer`` is ``diffusers.Transformer2DModel`` (GroupNorm eps 1e-6 -> 1x1 conv ``proj_in`` ->
  one ``BasicTransformerBlock`` ``norm1/attn1/norm2/attn2/norm3/ff`` with GEGLU -> 1x1 conv ``proj_out`` ->
  ``+ input``) applied to every frame by folding frames into the batch. diffusers registers ``norm3`` before
  ``ff`` (the checkpoint has ``ff`` first): only the state_dict order differs, names and shapes are equal.
* Every attention is ``diffusers.models.attention_processor.Attention`` (``to_q/to_k/to_v`` without bias,
  ``to_out.0`` with bias) run by ``AttnProcessor2_0``, i.e. ``F.scaled_dot_product_attention``.

Written here: the frame folding, and a processor that makes ``attn2`` contribute nothing when no audio is
given (the reference skips the audio cross-attention then; diffusers would run ``attn2`` as self-attention).
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.transformers.transformer_2d import Transformer2DModel

from latentsync.models.resnet import frame_by_frame

# Feed-forward of every transformer block (official: diffusers FeedForward with GEGLU, C -> 8C -> split -> C).
FEED_FORWARD_ACTIVATION = "geglu"


class AudioCrossAttnProcessor(AttnProcessor2_0):
    """SDPA attention (``AttnProcessor2_0``) whose output is zero when called without a context.

    diffusers' ``BasicTransformerBlock`` always calls ``attn2``, as self-attention when
    ``encoder_hidden_states`` is None; the reference skips the audio cross-attention then. Adding zeros to the
    residual stream equals that skip.
    """

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *args, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is None:
            return torch.zeros_like(hidden_states)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)


class SpatialTransformer(Transformer2DModel):
    """The official ``Transformer3DModel``: diffusers' ``Transformer2DModel`` on every frame of a video."""

    def __init__(self, channels: int, heads: int, groups: int, audio_dim: int | None) -> None:
        if channels % heads:
            raise ValueError(f"{channels} channels cannot be split into {heads} attention heads")
        super().__init__(num_attention_heads=heads, attention_head_dim=channels // heads,
                         in_channels=channels, norm_num_groups=groups, cross_attention_dim=audio_dim,
                         activation_fn=FEED_FORWARD_ACTIVATION)
        for block in self.transformer_blocks:
            if block.attn2 is not None:  # add_audio_layer: the only place audio enters the net
                block.attn2.set_processor(AudioCrossAttnProcessor())

    def forward(self, x: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        # x: (b, c, f, h, w); audio: ((b f), tokens, audio_dim) - each frame sees only its own audio window
        return frame_by_frame(self._forward_frames, x, audio)  # GroupNorm statistics per frame too

    def _forward_frames(self, frames: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        # frames: ((b f), c, h, w) -> ((b f), c, h, w)
        return super().forward(frames, encoder_hidden_states=audio, return_dict=False)[0]
