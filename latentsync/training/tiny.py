"""Tiny training setups (tests, benchmarks, smoke runs): random auxiliary networks in their official file formats,
synthetic aligned-face clips, and a tiny stage-2 config over :func:`latentsync.tiny.write_tiny_checkpoints`' folder.

Nothing here is used by real training; it lets every loading path and the whole loop run on a CPU in seconds.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentsync.media import SAMPLE_RATE, VIDEO_FPS

TINY_TRAIN_RESOLUTION = 32  # 4x4 latents: the tiny UNet's 4 levels go 4 -> 2 -> 1 -> 1
TINY_SYNCNET_RESOLUTION = 32  # the B_small StableSyncNet sees 16x32 lower halves
# Widths of the tiny *training* UNet (the tiny golden's topology otherwise). At 32 px faces the latents are 4x4 and
# the four levels run at 4, 2, 1 and 1 px; the motion modules' GroupNorm has 32 groups per frame, so a level of C
# channels at s x s px normalises groups of C / 32 * s^2 values. The golden's (32, 32, 64, 64) leaves 2 values per
# group at 1 px: GroupNorm then outputs about +-1 whatever the input, its gradient nearly vanishes, and float32
# rounding is amplified ~100x (batch-of-2 vs batch-of-1 outputs differ by 7e-5 relative instead of 5e-7).
# (32, 64, 128, 128) keeps >= 4 values per group everywhere (16, 8, 4, 4): 12.7 M parameters.
TINY_TRAIN_UNET_CHANNELS = (32, 64, 128, 128)
# The tiny TREPA golden's ViT, at 112 px (8 x 8 x 8 = 512 tokens instead of 2048: 16x cheaper attention).
TINY_VIDEOMAE = {"embed_dim": 48, "depth": 2, "num_heads": 4, "img_size": 112}


# The StableSyncNet towers end with GroupNorm(32 groups) -> ReLU on a 1x1 map: an embedding of C channels normalises
# groups of C / 32 values. With the tiny golden's 64, each group holds 2 values, which GroupNorm maps to about
# (+1, -1) whatever they are: the embedding is a near-binary vector, cos(v, a) sits near 0.5 for every pair and the
# gradient through the norm nearly vanishes (BCE stays at ln 2). 256 channels (8 values per group) learn.
TINY_SYNCNET_LEARNING_EMBED = 256


# A tiny StableSyncNet that learns (issue #13): GroupNorm has 32 groups, so a stage of C channels on an h x w map
# normalises groups of C / 32 * h * w values, and a group of 2 values comes out as about (+1, -1) whatever they are.
# The tiny golden's towers keep >= 4 values per group except at their 1x1 end (64 channels: 2). This one ends both
# towers in 256 channels (8 values per group at 1x1) and gives the audio tower scalar strides, which quarter its
# second stage (40x26 instead of 40x52: the 80x52 mel stages are ~80% of the tiny net's work):
#   audio  80x52 -> 40x26 -> 20x13 -> 10x6 -> 5x3 -> 2x1 -> 1x1, channels 32, 32, 32, 32, 64, 256;
#   the 64 channels at 2x1 keep 4 values per group; visual as the tiny golden's (16x32 -> ... -> 2x2 -> 1x1).
# No attention blocks (the plain variant, as configs/syncnet/syncnet_16_pixel.yaml): on the clips below the tiny net
# is limited by the windows it has seen, and without attention it learns a little more per window (held-out accuracy
# at 300 / 600 steps: 0.88 / 0.89 with attention, 0.90 / 0.91 without) and is ~25% cheaper per step.
TINY_SYNCNET_LEARNING_AUDIO = {"in_channels": 1, "block_out_channels": [32, 32, 32, 32, 64, TINY_SYNCNET_LEARNING_EMBED],
                               "downsample_factors": [2, 2, 2, 2, 2, [2, 1]], "attn_blocks": [0, 0, 0, 0, 0, 0]}

# Constructed clips the tiny StableSyncNet can learn to sync (write_sync_clip). Held-out accuracy of the tiny net
# above (measured with its attention blocks unless said; batch 16, lr 1e-3, 100-150 steps; chance 0.5):
# * talking decided per frame, or runs of geometric length (switch probability 1/3 or 0.17): 0.47-0.54, BCE stays
#   at ln 2 - a one-frame shift already changes half (or a third) of the frames, too fine for an untrained net;
#   per frame without attention at lr 1e-4: 0.79 / 0.86 after 300 / 1000 steps (train.seed 7: 0.71 / 0.82), still
#   below the 2-10-frame runs;
# * runs of 3-6 frames: nearly periodic (period ~9 frames), so windows shifted by 6-10 frames agree on ~70% of their
#   frames and are called in sync (0.71-0.76, stalls);
# * runs of 2-10 frames: shifted windows agree on 35-58% of their frames at every shift >= 4: 0.75 at 100 steps.
#   What stays wrong are mostly far shifts that agree by chance (16% of negative pairs agree on >= 12 of 16 frames).
#   The trained net's cosine grows with the windows' correlation (negatives correlated < 0: cos 0.10; 0 - 0.3: 0.33;
#   0.3 - 0.5: 0.50; in sync: 0.82), and it sharpens only with more windows seen: without attention, lr 1e-4,
#   0.90 / 0.91 / 0.94 / 0.95 held out after 300 / 600 / 1200 / 1500 steps of batch 16 (train.seed 7: 0.85 / 0.87 /
#   0.89 / 0.895);
# * shorter runs (1-3, 1-4, 1-6 frames) make chance agreement rarer but per-frame timing slower to learn: 0.77-0.84
#   after 300 steps at lr 1e-4; 3 "vowels" per run (bar colour <-> noise band): 0.85-0.89 after 450.
SYNC_RUN_FRAMES = (2, 10)  # talking / silent runs last 2-10 frames (80-400 ms)
# 240 frames: 221 window starts with a complete mel window. Four such clips fit the trainer's per-process clip cache
# and give 4x the windows of 2.4 s clips: held-out accuracy 0.88 instead of 0.84 after the same 300 steps (lr 1e-4).
SYNC_CLIP_SECONDS = 9.6
SYNC_MOUTH_CLOSED, SYNC_MOUTH_OPEN = 30, 240  # the mouth bar's grey level
# A white-noise burst lights every mel bin (~+0.5 against the silent floor of -4); a pure tone lights 2-3 of the 80
# bins between its onset and offset clicks, and in write_synthetic_clip its pitch moves with the seed, so held-out
# clips would sound in bins the training clips never used.
SYNC_BURST_AMPLITUDE = 0.3


def tiny_learning_syncnet_model_section(resolution: int = TINY_SYNCNET_RESOLUTION) -> dict[str, Any]:
    """The StableSyncNet ``model:`` section the learning test trains (see :data:`TINY_SYNCNET_LEARNING_AUDIO`)."""
    section = tiny_syncnet_model_section(resolution, embed_channels=TINY_SYNCNET_LEARNING_EMBED)
    section["audio_encoder"] = {key: list(value) if isinstance(value, list) else value
                                for key, value in TINY_SYNCNET_LEARNING_AUDIO.items()}
    section["visual_encoder"]["attn_blocks"] = [0] * len(section["visual_encoder"]["attn_blocks"])
    return section


def tiny_syncnet_model_section(resolution: int = TINY_SYNCNET_RESOLUTION, embed_channels: int = 64) -> dict[str, Any]:
    """The tiny golden's ``B_small`` StableSyncNet (633,248 params) for ``resolution`` px faces; ``embed_channels``
    widens both towers' last stage (see :data:`TINY_SYNCNET_LEARNING_EMBED`)."""
    audio = {"in_channels": 1, "block_out_channels": [32, 32, 32, 32, 32, 32, embed_channels],
             "downsample_factors": [[2, 1], 2, 2, 1, 2, 2, [2, 3]], "attn_blocks": [0, 0, 0, 1, 1, 0, 0]}
    visual = {"in_channels": 48, "block_out_channels": [32] * 7 + [embed_channels],
              "downsample_factors": [[1, 2], [2, 1], [1, 2], [2, 1], [1, 2], [2, 1], [1, 2], 2],
              "attn_blocks": [0, 0, 0, 0, 1, 1, 0, 0]}
    return {"audio_encoder": audio, "visual_encoder": visual, "resolution": resolution}


def write_tiny_syncnet(path: str | Path, embed_channels: int = TINY_SYNCNET_LEARNING_EMBED, seed: int = 0) -> Path:
    """A random tiny StableSyncNet (:func:`tiny_syncnet_model_section`) in the official ``{"state_dict"}`` format."""
    from latentsync.models.stable_syncnet import StableSyncNet, StableSyncNetConfig

    torch.manual_seed(seed)
    net = StableSyncNet(StableSyncNetConfig.from_dict(tiny_syncnet_model_section(embed_channels=embed_channels)))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "global_step": 0}, path)
    return Path(path)


def write_tiny_auxiliary(directory: str | Path, seed: int = 0) -> Path:
    """Add random ``stable_syncnet.pt`` (tiny), ``auxiliary/vit_g_hybrid_pt_1200e_ssv2_ft.pth`` (tiny ViT) and
    ``auxiliary/vgg16-397923af.pth`` (full VGG16 features, placeholder classifier) to a checkpoints folder, at the
    registry's paths and in the official formats."""
    from latentsync.checkpoints import AUXILIARY
    from latentsync.models.lpips import vgg16_features
    from latentsync.models.stable_syncnet import StableSyncNet, StableSyncNetConfig
    from latentsync.models.videomae import VideoMAEConfig, VisionTransformer

    directory = Path(directory)
    torch.manual_seed(seed)
    syncnet = StableSyncNet(StableSyncNetConfig.from_dict(tiny_syncnet_model_section()))
    videomae = VisionTransformer(VideoMAEConfig(**TINY_VIDEOMAE))
    vgg = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    # torchvision's file also holds the ImageNet classifier, which LPIPS drops: 1-element stand-ins keep this small.
    vgg.update({f"classifier.{i}.{p}": torch.zeros(1) for i in (0, 3, 6) for p in ("weight", "bias")})
    files = {"stable_syncnet": {"state_dict": syncnet.state_dict(), "global_step": 0},
             "videomae_v2": {"module": videomae.state_dict()}, "vgg16": vgg}
    for name, content in files.items():
        path = directory / AUXILIARY[name].local_path
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(content, path)
    return directory


def face_frames(n_frames: int, resolution: int, seed: int) -> np.ndarray:
    """(n, res, res, 3) uint8: a smooth colour field that differs between seeds (the "face" behind the mouth)."""
    yy, xx = np.mgrid[0:resolution, 0:resolution] / resolution
    base = np.stack([0.5 + 0.3 * np.sin(6 * xx + seed), 0.4 + 0.3 * yy, 0.5 + 0.2 * np.cos(5 * yy + seed)], -1)
    return np.repeat((base * 255).astype(np.uint8)[None], n_frames, axis=0)


def mouth_box(resolution: int) -> tuple[slice, slice]:
    """(rows, columns) of the mouth bar, in the face's lower half."""
    return slice(int(0.7 * resolution), int(0.7 * resolution) + resolution // 6), slice(int(0.3 * resolution),
                                                                                       int(0.7 * resolution))


def write_synthetic_clip(path: str | Path, seed: int, seconds: float = 2.4,
                         resolution: int = TINY_TRAIN_RESOLUTION) -> Path:
    """An "aligned face" clip the data toolchain could have made (H.264, 25 fps, square, AAC 16 kHz mono) whose
    mouth follows its sound: a bright mouth bar opens on the frames where a tone burst plays.

    Each frame talks or not independently and the tone's pitch depends on the seed: fine for the UNet's tests, too
    hard for a tiny StableSyncNet to learn from (see :func:`write_sync_clip`)."""
    from latentsync.media import VideoWriter

    rng = np.random.default_rng(seed)
    n_frames = round(seconds * VIDEO_FPS)
    talking = rng.random(n_frames) < 0.5  # per frame: mouth open and sound on
    frames = face_frames(n_frames, resolution, seed)
    rows, cols = mouth_box(resolution)
    for i in np.flatnonzero(talking):
        frames[i, rows, cols] = 240
    samples_per_frame = SAMPLE_RATE // VIDEO_FPS
    t = np.arange(n_frames * samples_per_frame) / SAMPLE_RATE
    envelope = np.repeat(talking.astype(np.float32), samples_per_frame)
    audio = (0.5 * envelope * np.sin(2 * np.pi * (300 + 50 * seed) * t)).astype(np.float32)
    with VideoWriter(path, width=resolution, height=resolution, audio=audio, crf=10) as writer:
        writer.write(frames)
    return Path(path)


def talking_runs(rng: np.random.Generator, n_frames: int,
                 run_frames: tuple[int, int] = SYNC_RUN_FRAMES) -> np.ndarray:
    """(n,) bool: alternating talking / silent runs, each ``run_frames[0]`` .. ``run_frames[1]`` frames long
    (uniform), starting with either."""
    talking = np.zeros(n_frames, bool)
    state, i = bool(rng.random() < 0.5), 0
    while i < n_frames:
        length = int(rng.integers(run_frames[0], run_frames[1] + 1))
        talking[i:i + length] = state
        state, i = not state, i + length
    return talking


def write_sync_clip(path: str | Path, seed: int, seconds: float = SYNC_CLIP_SECONDS,
                    resolution: int = TINY_SYNCNET_RESOLUTION, independent_audio: bool = False) -> Path:
    """A clip (format as :func:`write_synthetic_clip`) a tiny StableSyncNet can learn to sync: the mouth bar opens
    (:data:`SYNC_MOUTH_OPEN`) during talking runs (:func:`talking_runs`) and a white-noise burst plays on exactly
    those frames. ``independent_audio``: the bursts follow a second, unrelated pattern (a control: no sync to learn).
    """
    from latentsync.media import VideoWriter

    rng = np.random.default_rng(seed)
    n_frames = round(seconds * VIDEO_FPS)
    talking = talking_runs(rng, n_frames)
    sounding = talking_runs(rng, n_frames) if independent_audio else talking
    frames = face_frames(n_frames, resolution, seed)
    rows, cols = mouth_box(resolution)
    frames[:, rows, cols] = np.where(talking, SYNC_MOUTH_OPEN, SYNC_MOUTH_CLOSED).astype(np.uint8)[:, None, None, None]
    samples_per_frame = SAMPLE_RATE // VIDEO_FPS
    envelope = np.repeat(sounding.astype(np.float32), samples_per_frame)
    noise = rng.standard_normal(n_frames * samples_per_frame).astype(np.float32)
    audio = np.clip(SYNC_BURST_AMPLITUDE * envelope * noise, -1.0, 1.0)
    with VideoWriter(path, width=resolution, height=resolution, audio=audio, crf=10) as writer:
        writer.write(frames)
    return Path(path)


def write_synthetic_dataset(directory: str | Path, n_clips: int = 4, seconds: float = 2.4,
                            resolution: int = TINY_TRAIN_RESOLUTION, first_seed: int = 0,
                            clip_writer: Callable[..., Path] = write_synthetic_clip) -> Path:
    """``n_clips`` synthetic clips (seeds ``first_seed`` ...) and their file list (``fileslist.txt``, paths
    relative to it); returns the list. ``clip_writer``: :func:`write_synthetic_clip` or :func:`write_sync_clip`."""
    directory = Path(directory)
    (directory / "clips").mkdir(parents=True, exist_ok=True)
    names = [f"clips/clip{i:03d}.mp4" for i in range(n_clips)]
    for i, name in enumerate(names):
        clip_writer(directory / name, seed=first_seed + i, seconds=seconds, resolution=resolution)
    fileslist = directory / "fileslist.txt"
    fileslist.write_text("# synthetic clips\n" + "\n".join(names) + "\n", encoding="utf-8")
    return fileslist


def write_tiny_train_unet(checkpoints_dir: str | Path, path: str | Path, seed: int = 0,
                          block_out_channels: tuple[int, ...] = TINY_TRAIN_UNET_CHANNELS) -> dict[str, Any]:
    """A random UNet like the tiny folder's but ``block_out_channels`` wide, saved in the official format at ``path``
    (random non-zero ``conv_out`` and motion modules, as a stage-1 result would have); returns its ``model:`` section
    (pass it with ``init_unet=path`` to :func:`tiny_unet_train_config`)."""
    from latentsync.checkpoints import LOCAL_CONFIG_NAME
    from latentsync.models.unet import LatentSyncUNet, randomize_zero_init_
    from latentsync.models.unet_checkpoint import save_unet_checkpoint
    from latentsync.models.unet_config import UNetConfig

    model = json.loads((Path(checkpoints_dir) / LOCAL_CONFIG_NAME).read_text())["unet"]
    model.pop("resolution", None)
    model["block_out_channels"] = list(block_out_channels)
    torch.manual_seed(seed)  # module construction draws default initialisations from the global generator
    unet = randomize_zero_init_(LatentSyncUNet(UNetConfig.from_dict(model)), torch.Generator().manual_seed(seed))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_unet_checkpoint(unet, path)
    return model


def tiny_unet_train_config(checkpoints_dir: str | Path, fileslist: str | Path, output_dir: str | Path,
                           syncnet_yaml: str | Path, **overrides: Any) -> dict[str, Any]:
    """A stage-2 config (all four losses) for the tiny networks in ``checkpoints_dir``, as the dict a YAML holds.

    ``overrides``: top-level keys, or ``"section.key"`` for one value of a section.
    """
    from latentsync.checkpoints import LOCAL_CONFIG_NAME, get_version

    unet = json.loads((Path(checkpoints_dir) / LOCAL_CONFIG_NAME).read_text())["unet"]
    unet.pop("resolution", None)
    # Stage 2 starts from trained weights: from a fresh net (zero conv_out, frozen) no gradient would reach the
    # trainable modules. The tiny folder's random UNet stands in for a stage-1 result.
    init_unet = Path(checkpoints_dir) / get_version("1.5").unet.local_path
    config: dict[str, Any] = {
        "version": "1.5", "init_unet": str(init_unet), "trainable_modules": ["motion_modules.", "attentions."],
        "syncnet_config": str(syncnet_yaml), "videomae_model": dict(TINY_VIDEOMAE),
        "enable_gradient_checkpointing": True, "validation_steps": 2,
        "model": unet,
        "data": {"train_fileslist": str(fileslist), "batch_size": 1, "num_workers": 0,
                 "resolution": TINY_TRAIN_RESOLUTION},
        "loss": {},  # the reference's stage-2 weights
        "optimizer": {"lr": 1e-3},
        "train": {"output_dir": str(output_dir), "max_train_steps": 4, "save_every": 1000, "log_every": 1,
                  "mixed_precision": "no", "checkpoints_dir": str(checkpoints_dir)},
    }
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        (config[section] if section else config)[name] = value
    return config


# The StableSyncNet learning run (tests/test_training_syncnet_learns.py, benchmarks/bench_syncnet_learning.py).
SYNC_LEARNING_BATCH = 16
# Held-out accuracy at 50 / 150 steps: lr 2e-3 0.52 / -, 1e-3 0.58 / 0.79, 5e-4 0.70 / 0.74, 2.5e-4 0.69 / 0.74,
# 1e-4 0.79 / 0.80 (schedules with warm-up, peak 1e-4 .. 6e-4, do no better by 300 steps: benchmarks/README.md).
SYNC_LEARNING_LR = 1e-4
SYNC_LEARNING_TRAIN_CLIPS, SYNC_LEARNING_VAL_CLIPS = 4, 2
SYNC_LEARNING_VAL_SEED = 1000  # held-out clips: seeds the training clips never use (other faces, other patterns)


def syncnet_learning_config(root: str | Path, max_train_steps: int, validate_every: int, val_samples: int = 256,
                            seed: int | None = None, log_every: int = 50,
                            train_clips: int = SYNC_LEARNING_TRAIN_CLIPS):
    """Write the learning run's clips (:func:`write_sync_clip`: ``train_clips`` (4) for training, 2 held out) under
    ``root`` and return its :class:`~latentsync.training.config.SyncNetTrainConfig`: the plain tiny net
    (:func:`tiny_learning_syncnet_model_section`), batch 16, AdamW lr 1e-4, validation on ``val_samples`` held-out
    windows every ``validate_every`` steps; ``seed``: ``train.seed`` (default the config's, 42). The training clips
    use seeds 0 .. ``train_clips`` - 1; the held-out ones are the same whatever their number."""
    from latentsync.training.config import load_syncnet_train_config

    root = Path(root)

    def clips(name: str, first_seed: int, n: int) -> Path:
        return write_synthetic_dataset(root / name, n_clips=n, seconds=SYNC_CLIP_SECONDS,
                                       resolution=TINY_SYNCNET_RESOLUTION, first_seed=first_seed,
                                       clip_writer=write_sync_clip)

    train = clips("train", 0, train_clips)
    val = clips("val", SYNC_LEARNING_VAL_SEED, SYNC_LEARNING_VAL_CLIPS)
    loop = {"max_train_steps": max_train_steps, "validate_every": validate_every, "save_every": max_train_steps,
            "log_every": log_every, **({"seed": seed} if seed is not None else {})}
    path = write_tiny_syncnet_yaml(root / "syncnet.yaml", train, root / "run",
                                   model=tiny_learning_syncnet_model_section(),
                                   data={"batch_size": SYNC_LEARNING_BATCH,
                                         "samples_per_epoch": SYNC_LEARNING_BATCH * 50, "val_fileslist": str(val)},
                                   optimizer={"lr": SYNC_LEARNING_LR}, **loop)
    return dataclasses.replace(load_syncnet_train_config(path), val_samples=val_samples)


def write_tiny_syncnet_yaml(path: str | Path, fileslist: str | Path, output_dir: str | Path,
                            embed_channels: int = 64, model: dict[str, Any] | None = None,
                            data: dict[str, Any] | None = None, optimizer: dict[str, Any] | None = None,
                            **train: Any) -> Path:
    """A SyncNet training YAML for the tiny StableSyncNet (also the UNet config's ``syncnet_config``).

    ``model``: a whole ``model:`` section instead of :func:`tiny_syncnet_model_section` (e.g.
    :func:`tiny_learning_syncnet_model_section`); ``data`` / ``optimizer`` / ``train``: keys replacing the defaults.
    """
    import yaml

    model = model or tiny_syncnet_model_section(embed_channels=embed_channels)
    doc = {"model": model,
           "data": {"train_fileslist": str(fileslist), "batch_size": 8, "num_workers": 0,
                    "resolution": model["resolution"], "samples_per_epoch": 64, **(data or {})},
           "optimizer": {"lr": 1e-3, **(optimizer or {})},
           "train": {"output_dir": str(output_dir), "max_train_steps": 10, "mixed_precision": "no",
                     "save_every": 1000, "validate_every": 0, "log_every": 10, **train}}
    Path(path).write_text(yaml.safe_dump(doc), encoding="utf-8")
    return Path(path)
