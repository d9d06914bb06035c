"""Typed training configs, read from the YAML files a user copies from ``configs/`` (no torch import here).

One dataclass per section; every field carries the reference's value as its default where the reference has one
(README §5.1, §7, training/README §4). Unknown keys raise ``ValueError`` naming them, so a typo is never ignored.
Relative paths in a YAML file are read relative to the current directory, like every command-line path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentsync.models.unet_config import UNetConfig

MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16")
OPTIMIZER_CHOICES = ("adamw", "sgd")
# diffusers.optimization.get_scheduler's names (less piecewise_constant, which needs its own rules string)
LR_SCHEDULER_CHOICES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
# The reference's trainable_modules, which it applies only to a net with motion modules (stage 2); a net without
# them (stage 1) trains whole. A config that gives the key explicitly always gets exactly its patterns.
STAGE2_TRAINABLE_MODULES = ("motion_modules.", "attentions.")
# init_unet names for the registry's released UNets (resolved like inference: train.checkpoints_dir,
# $LATENTSYNC_CHECKPOINTS, else the Hub) -> registry version.
RELEASED_UNETS = {"released-1.5": "1.5", "released-1.6": "1.6"}


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with a constant learning rate (torch defaults for betas, eps and weight decay), as the reference.

    ``lr_scheduler`` / ``lr_warmup_steps`` / ``scale_lr`` are the reference's keys with its values (constant, 0,
    false): a schedule by diffusers' ``get_scheduler`` name, counted in optimiser steps; ``scale_lr`` multiplies
    ``lr`` by the number of processes.

    ``name: sgd`` (plain SGD: update = -lr x (clipped gradient + weight_decay x weight); betas and eps unused) is a
    debugging option: its update is linear in the gradient, so runs can be compared through their updates (e.g. N
    processes against one), which Adam's sign-like first steps do not allow.
    """

    name: str = "adamw"  # "adamw" (the reference) or "sgd"
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0  # gradient-norm clipping
    lr_scheduler: str = "constant"  # one of LR_SCHEDULER_CHOICES
    lr_warmup_steps: int = 0  # optimiser steps of linear warm-up from 0 (schedules "..._with_warmup", linear, cosine...)
    scale_lr: bool = False  # lr x number of processes

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZER_CHOICES:
            raise ValueError(f"optimizer.name must be one of {OPTIMIZER_CHOICES}, got {self.name!r}")
        if self.lr_scheduler not in LR_SCHEDULER_CHOICES:
            raise ValueError(f"optimizer.lr_scheduler must be one of {LR_SCHEDULER_CHOICES}, got {self.lr_scheduler!r}")
        if not isinstance(self.lr_warmup_steps, int) or self.lr_warmup_steps < 0:
            raise ValueError(f"optimizer.lr_warmup_steps must be a whole number >= 0, got {self.lr_warmup_steps!r}")


@dataclass(frozen=True)
class TrainLoopConfig:
    """Settings every trainer shares."""

    output_dir: str = "runs/train"  # accelerate state in output_dir/state, official checkpoints in output_dir/checkpoints
    seed: int = 1247  # samples, noise and timesteps are drawn from generators seeded by (seed, sample index)
    max_train_steps: int = 10_000_000  # optimiser steps
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "fp16"  # "no", "fp16" (autocast + GradScaler) or "bf16"
    save_every: int = 10_000  # optimiser steps between checkpoints (official .pt + accelerate state)
    validate_every: int = 0  # optimiser steps between validations; 0: never
    log_every: int = 10  # optimiser steps between log lines
    checkpoints_dir: str | None = None  # local weights directory (else $LATENTSYNC_CHECKPOINTS, else the Hub)

    def __post_init__(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION_CHOICES:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION_CHOICES}, got {self.mixed_precision!r}")
        for name in ("max_train_steps", "gradient_accumulation_steps", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.validate_every < 0:
            raise ValueError(f"validate_every must be >= 0, got {self.validate_every!r}")


@dataclass(frozen=True)
class DataConfig:
    """Clips from the data toolchain: aligned faces, 25 fps, ``resolution`` square, 16 kHz audio."""

    train_fileslist: str = ""  # UTF-8 list of clip paths, relative to the list's folder
    val_fileslist: str | None = None  # SyncNet only: held-out clips for the accuracy check
    batch_size: int = 1  # per process
    num_workers: int = 4  # DataLoader worker processes
    resolution: int = 256  # faces are resized to this if the clips differ
    samples_per_epoch: int | None = None  # items per epoch (None: one per clip, as the reference)
    fixed_samples: bool = False  # every epoch repeats epoch 0's samples, noise and timesteps (overfitting checks)
    val_video_path: str | None = None  # UNet validation: a talking-face video ...
    val_audio_path: str | None = None  # ... and the speech to lip-sync it to

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_workers < 0 or self.resolution % 8:
            raise ValueError(f"invalid data section: batch_size {self.batch_size} (>= 1), num_workers "
                             f"{self.num_workers} (>= 0), resolution {self.resolution} (a multiple of 8)")


@dataclass(frozen=True)
class UNetLossConfig:
    """Stage 1 turns everything but the reconstruction off; stage 2 adds the pixel-space losses."""

    recon_loss_weight: float = 1.0
    pixel_space_supervise: bool = True  # decode the one-step x0 estimate (needed by LPIPS and TREPA)
    perceptual_loss_weight: float = 0.1  # LPIPS (VGG v0.1) on the lower half
    trepa_loss_weight: float = 10.0  # VideoMAE-v2 feature MSE on whole frames
    use_syncnet: bool = True
    sync_loss_weight: float = 0.05  # -log cos(v, a) through the frozen StableSyncNet
    use_mixed_noise: bool = True
    mixed_noise_alpha: float = 1.0  # shared-over-frames noise : independent noise = alpha^2 : 1


@dataclass(frozen=True)
class UNetTrainConfig:
    """``python -m latentsync.training unet CONFIG``."""

    model: UNetConfig = field(default_factory=UNetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: UNetLossConfig = field(default_factory=UNetLossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    # Parameters whose name contains one of these are trained (empty: all of them). Not given (None): as the
    # reference, STAGE2_TRAINABLE_MODULES when the model has motion modules, else the whole UNet.
    trainable_modules: tuple[str, ...] | None = None
    # Starting weights: an official .pt / .safetensors path, or a released UNet by name (RELEASED_UNETS). A file
    # without motion modules (stage 1) fills all but the net's motion modules, which keep their identity
    # initialisation; a file with motion modules the net lacks (released weights into stage 1 or the efficient
    # stage) has exactly those dropped. A fine-tune counts its own steps from 0 (the file's global_step is logged).
    init_unet: str | None = None
    version: str = "1.5"  # which registry entry supplies Whisper and the VAE (and the validation face weights)
    syncnet_config: str = "configs/syncnet/syncnet_16_pixel_attn.yaml"  # StableSyncNet architecture (its model section)
    syncnet_checkpoint: str | None = None  # None: the registry's "stable_syncnet"
    videomae_checkpoint: str | None = None  # None: the registry's "videomae_v2"
    videomae_model: dict[str, Any] = field(default_factory=dict)  # VideoMAEConfig overrides ({}: ViT-g/14)
    vgg_checkpoint: str | None = None  # None: the registry's "vgg16"
    enable_gradient_checkpointing: bool = True
    validation_steps: int = 20  # DDIM steps of the validation render
    validation_guidance: float = 1.5

    def __post_init__(self) -> None:
        if self.trainable_modules is None:  # resolved once, from this config's model (frozen: set through object)
            default = STAGE2_TRAINABLE_MODULES if self.model.use_motion_module else ()
            object.__setattr__(self, "trainable_modules", default)


@dataclass(frozen=True)
class SyncNetTrainConfig:
    """``python -m latentsync.training syncnet CONFIG``; ``model`` is a StableSyncNet ``model:`` section."""

    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=256, num_workers=12))
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainLoopConfig = field(default_factory=lambda: TrainLoopConfig(seed=42, save_every=2500,
                                                                           validate_every=2500))
    init_checkpoint: str | None = None  # starting weights (official {"state_dict"} file)
    val_samples: int = 2048  # windows scored at each validation
    enable_gradient_checkpointing: bool = False
    version: str = "1.5"  # latent variant (model.pixel_space false): which registry entry supplies the VAE


def _build(cls: type, values: dict[str, Any] | None, what: str) -> Any:
    values = dict(values or {})
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{what}: unknown keys {unknown} (known: {sorted(names)})")
    for name, value in list(values.items()):
        if isinstance(value, list):
            values[name] = tuple(value)
    return cls(**values)


def _read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml  # optional dependency (requirements-train.txt), imported only here

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:  # the parser's marks are 0-based; its whole message spans several lines
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        raise ValueError(f"{path.name} is not valid YAML{where}: {problem}") from err
    if not isinstance(data, dict):
        raise TypeError(f"{path}: a training config is a mapping of sections, got {type(data).__name__}")
    return data


def unet_config_from_dict(data: dict[str, Any], source: str = "config") -> UNetTrainConfig:
    data = dict(data)
    sections = {"data": DataConfig, "loss": UNetLossConfig, "optimizer": OptimizerConfig, "train": TrainLoopConfig}
    built = {name: _build(cls, data.pop(name, None), f"{source}: {name}") for name, cls in sections.items()}
    model = UNetConfig.from_dict(data.pop("model", {}) or {})
    model = dataclasses.replace(model, resolution=built["data"].resolution)
    # Top-level scalars, built with the sections so that an omitted trainable_modules follows this model.
    names = {f.name for f in dataclasses.fields(UNetTrainConfig)}
    unknown = sorted(set(data) - names - {"model", *sections})
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown} (known: {sorted(names)})")
    values = {name: tuple(value) if isinstance(value, list) else value for name, value in data.items()}
    return UNetTrainConfig(model=model, **built, **values)


def syncnet_config_from_dict(data: dict[str, Any], source: str = "config") -> SyncNetTrainConfig:
    data = dict(data)
    defaults = SyncNetTrainConfig()
    built = {
        "data": _build(DataConfig, {**dataclasses.asdict(defaults.data), **(data.pop("data", None) or {})},
                       f"{source}: data"),
        "optimizer": _build(OptimizerConfig, data.pop("optimizer", None), f"{source}: optimizer"),
        "train": _build(TrainLoopConfig, {**dataclasses.asdict(defaults.train), **(data.pop("train", None) or {})},
                        f"{source}: train"),
    }
    model = data.pop("model", None)
    if not model:
        raise ValueError(f"{source}: the 'model' section (audio_encoder, visual_encoder) is required")
    rest = _build(SyncNetTrainConfig, data, source)
    return dataclasses.replace(rest, model=model, **built)


def load_unet_train_config(path: str | Path) -> UNetTrainConfig:
    return unet_config_from_dict(_read_yaml(path), str(path))


def load_syncnet_train_config(path: str | Path) -> SyncNetTrainConfig:
    return syncnet_config_from_dict(_read_yaml(path), str(path))


def read_syncnet_model_section(path: str | Path) -> dict[str, Any]:
    """The ``model:`` section of a SyncNet training YAML (what the UNet trainer needs of it)."""
    model = _read_yaml(path).get("model")
    if not model:
        raise ValueError(f"{path}: no 'model' section")
    return model


def config_to_dict(config: UNetTrainConfig | SyncNetTrainConfig) -> dict[str, Any]:
    """The resolved config as the plain mapping a YAML file holds (lists for tuples); the loaders read it back."""
    import json

    data = dataclasses.asdict(config)
    if isinstance(config, UNetTrainConfig):
        data["model"] = config.model.to_dict()
    return json.loads(json.dumps(data))  # tuples -> lists, a deep copy of plain types


def count_trainable_parameters(config: UNetTrainConfig) -> tuple[int, int]:
    """(trainable, total) UNet parameters for ``config``, computed on the meta device (no memory)."""
    import torch

    from latentsync.models.unet import LatentSyncUNet

    with torch.device("meta"):
        unet = LatentSyncUNet(config.model)
    total = sum(p.numel() for p in unet.parameters())
    trainable = sum(p.numel() for name, p in unet.named_parameters() if is_trainable(name, config.trainable_modules))
    return trainable, total


def is_trainable(name: str, patterns: tuple[str, ...]) -> bool:
    """Name-pattern selection as the reference's ``trainable_modules`` (no patterns: everything)."""
    return not patterns or any(pattern in name for pattern in patterns)
