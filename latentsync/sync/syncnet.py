"""The original SyncNet ('S' model, Chung & Zisserman 2016) behind the field's Sync-C / Sync-D scores.

Two towers map 0.2 s of speech and 5 frames of a face crop to 1024-d embeddings; in-sync pairs are close
in Euclidean distance. The module layout (four ``nn.Sequential`` containers, BatchNorm after every conv and
the first linear layer) reproduces the state_dict of the public checkpoint ``auxiliary/syncnet_v2.model``
name for name (102 entries, 13,631,616 parameters), so it loads with ``strict=True``.

Receptive-field arithmetic (why the strides and pools are what they are):

* audio, MFCC (13 coeffs x 20 steps): convs keep 13x20; max-pool 3x3 stride (1,2) -> 11x9; convs keep
  11x9; max-pool 3x3 stride 2 -> 5x4; the final 5x4 conv -> 1x1 (512 channels).
* lips, (3, 5, 224, 224): conv (5,7,7) stride (1,2,2) eats the 5 frames and gives 109x109; pool 3/2 ->
  54; conv 5x5 stride 2 pad 1 -> 26; pool 3/2 pad 1 -> 13; convs keep 13; pool 3/2 -> 6; the final 6x6
  conv -> 1x1 (512 channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from latentsync.errors import CheckpointError

MFCC_COEFFS = 13  # python_speech_features' default numcep
MFCC_STEPS_PER_WINDOW = 20  # 0.2 s at 100 MFCC steps per second = 5 video frames at 25 fps
FRAMES_PER_WINDOW = 5  # video frames seen by one lip embedding
CROP_SIZE = 224  # face crops are resized to 224x224 before the lip tower
TOWER_CHANNELS = 512  # channels of both towers' last conv (its output is 1x1, flattened to 512)


@dataclass(frozen=True)
class SyncNetV2Config:
    """The released 'S' model has a single free size: the embedding width of both fc heads."""

    embedding_dim: int = 1024  # output width of netfcaud / netfclip (the 'v2' checkpoint uses 1024)


def _conv_bn_relu_2d(
    c_in: int, c_out: int, kernel: tuple[int, int], padding: tuple[int, int]
) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=padding), nn.BatchNorm2d(c_out), nn.ReLU()]


def _conv_bn_relu_3d(
    c_in: int,
    c_out: int,
    kernel: tuple[int, int, int],
    stride: tuple[int, int, int] = (1, 1, 1),
    padding: tuple[int, int, int] = (0, 0, 0),
) -> list[nn.Module]:
    return [nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding), nn.BatchNorm3d(c_out), nn.ReLU()]


def _fc_head(embedding_dim: int) -> nn.Sequential:
    # indices 0 linear, 1 BN, 2 ReLU, 3 linear: matches `netfc*.{0,1,3}` in the checkpoint
    return nn.Sequential(
        nn.Linear(TOWER_CHANNELS, TOWER_CHANNELS),
        nn.BatchNorm1d(TOWER_CHANNELS),
        nn.ReLU(),
        nn.Linear(TOWER_CHANNELS, embedding_dim),
    )


def _audio_tower() -> nn.Sequential:
    """(B, 1, 13, 20) MFCC -> (B, 512, 1, 1). Sequential indices match `netcnnaud.<i>` in the checkpoint."""
    return nn.Sequential(
        *_conv_bn_relu_2d(1, 64, (3, 3), (1, 1)),  # 0-2
        nn.Identity(),  # 3: the original has a 1x1/stride-1 max-pool here, which is the identity
        *_conv_bn_relu_2d(64, 192, (3, 3), (1, 1)),  # 4-6
        nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),  # 7: 13x20 -> 11x9
        *_conv_bn_relu_2d(192, 384, (3, 3), (1, 1)),  # 8-10
        *_conv_bn_relu_2d(384, 256, (3, 3), (1, 1)),  # 11-13
        *_conv_bn_relu_2d(256, 256, (3, 3), (1, 1)),  # 14-16
        nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),  # 17: 11x9 -> 5x4
        *_conv_bn_relu_2d(256, TOWER_CHANNELS, (5, 4), (0, 0)),  # 18-20: 5x4 -> 1x1
    )


def _lip_tower() -> nn.Sequential:
    """(B, 3, 5, 224, 224) BGR crops -> (B, 512, 1, 1, 1). Indices match `netcnnlip.<i>`."""
    spatial_pool = dict(kernel_size=(1, 3, 3), stride=(1, 2, 2))
    return nn.Sequential(
        *_conv_bn_relu_3d(3, 96, (5, 7, 7), stride=(1, 2, 2)),  # 0-2: (5, 224²) -> (1, 109²)
        nn.MaxPool3d(**spatial_pool),  # 3: -> 54²
        *_conv_bn_relu_3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),  # 4-6: -> 26²
        nn.MaxPool3d(**spatial_pool, padding=(0, 1, 1)),  # 7: -> 13²
        *_conv_bn_relu_3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),  # 8-10
        *_conv_bn_relu_3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),  # 11-13
        *_conv_bn_relu_3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),  # 14-16
        nn.MaxPool3d(**spatial_pool),  # 17: -> 6²
        *_conv_bn_relu_3d(256, TOWER_CHANNELS, (1, 6, 6)),  # 18-20: -> 1²
    )


class SyncNetV2(nn.Module):
    """Audio and lip towers of the original SyncNet; attribute names are the checkpoint's prefixes."""

    def __init__(self, config: SyncNetV2Config | None = None) -> None:
        super().__init__()
        self.config = config or SyncNetV2Config()
        # Registration order = the checkpoint's state_dict order (audio, both fc heads, then lips).
        self.netcnnaud = _audio_tower()
        self.netfcaud = _fc_head(self.config.embedding_dim)
        self.netfclip = _fc_head(self.config.embedding_dim)
        self.netcnnlip = _lip_tower()

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """MFCC windows (B, 1, 13, 20) -> audio embeddings (B, embedding_dim)."""
        expected = (1, MFCC_COEFFS, MFCC_STEPS_PER_WINDOW)
        if mfcc.ndim != 4 or tuple(mfcc.shape[1:]) != expected:
            raise ValueError(f"embed_audio: mfcc must have shape (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(mfcc.shape)}")
        features = self.netcnnaud(mfcc)  # (B, 512, 1, 1)
        return self.netfcaud(features.flatten(1))  # (B, D)

    def embed_lips(self, video: torch.Tensor) -> torch.Tensor:
        """Face-crop windows (B, 3, 5, 224, 224), BGR 0-255 floats -> lip embeddings (B, embedding_dim)."""
        expected = (3, FRAMES_PER_WINDOW, CROP_SIZE, CROP_SIZE)
        if video.ndim != 5 or tuple(video.shape[1:]) != expected:
            raise ValueError(f"embed_lips: video must have shape (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(video.shape)}")
        features = self.netcnnlip(video)  # (B, 512, 1, 1, 1)
        return self.netfclip(features.flatten(1))  # (B, D)

    def forward(self, mfcc: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both embeddings: ((B, D) audio, (B, D) lips)."""
        return self.embed_audio(mfcc), self.embed_lips(video)


def load_syncnet_v2(
    path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> SyncNetV2:
    """Load ``auxiliary/syncnet_v2.model`` (a plain state_dict saved with ``torch.save``) in eval mode.

    Raises :class:`CheckpointError` when the file is missing, is not a tensor state_dict, or any name or
    shape differs from the architecture (strict loading: a wrong file never runs silently).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"SyncNet checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have several types; all mean "not a usable checkpoint"
        raise CheckpointError(f"could not read SyncNet checkpoint {path}: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a plain state_dict of tensors (the syncnet_v2.model format)")

    with torch.device("meta"):
        model = SyncNetV2()
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{name}: file {tuple(state[name].shape)} vs model {shape}"
        for name, shape in expected.items()
        if name in state and tuple(state[name].shape) != shape
    ]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{path} does not match SyncNetV2: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)}), "
            f"wrong shapes {wrong_shape[:5]} ({len(wrong_shape)})"
        )
    # assign=True adopts the loaded tensors, so the meta-built model never draws random init weights
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
