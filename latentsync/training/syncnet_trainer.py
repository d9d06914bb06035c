"""StableSyncNet training (reference ``scripts/train_syncnet.py``; README §5.1, training/README §1.3).

Half the windows pair the audio with its own frames (label 1), half with frames from another start of the same clip
(label 0); the loss is the BCE of the embeddings' cosine similarity. Every ``validate_every`` steps the accuracy
(cos > 0.5 means "in sync") and loss on ``val_samples`` windows of ``data.val_fileslist`` are logged.

The pixel variants (``pixel_space: true``) see the 16 frames' pixels in [-1, 1], stacked on channels (48), lower
halves. The latent variant (``syncnet_16_latent``, ``pixel_space: false``) sees the *whole* faces encoded by the
frozen VAE of registry version ``version`` (the UNet's): per frame a posterior sample x 0.18215 (shift 0), stacked
on channels as ``frame x 4 + latent channel`` (16 x 4 = 64 channels, 32 x 32 at 256 px), as the reference does;
each window's posterior noise comes from its own generator (the item's ``seed``), so it depends only on the sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange

from latentsync.training import engine, inputs, losses
from latentsync.training.config import SyncNetTrainConfig


@dataclass(frozen=True)
class VisualInput:
    """What the visual tower sees of a batch: its frames as they are (pixel variants), or their VAE latents."""

    vae: object | None = None  # the latent variant's frozen TrainingVae; None: pixels
    latent_lower_half: bool = False  # latent variant with lower_half: keep the latents' lower rows

    def __call__(self, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        frames = batch["frames"].to(device)  # (b, f*3, h, w) in [-1, 1]
        if self.vae is None:
            return frames
        generators = [torch.Generator().manual_seed(int(seed)) for seed in batch["seed"]]
        latents = self.vae.encode_videos(rearrange(frames, "b (f c) h w -> b f c h w", c=3), generators)
        # (b, 4, f, h/8, w/8) -> (b, f*4, h/8, w/8), channel = frame * 4 + latent channel (the UNet's sync loss
        # feeds its predicted latents through the same function)
        return losses.syncnet_latents(latents.float(), self.latent_lower_half)


def visual_input(config: SyncNetTrainConfig, device: torch.device, log) -> VisualInput:
    """Pixels for the pixel variants; the frozen VAE (no gradient checkpointing: it runs without gradients) for the
    latent one."""
    from latentsync.models.stable_syncnet import StableSyncNetConfig

    model_config = StableSyncNetConfig.from_dict(config.model)
    if model_config.pixel_space:
        return VisualInput()
    from latentsync.models.vae import LatentVae
    from latentsync.training.models import TrainingVae, frozen_dtype, vae_folder

    folder = vae_folder(config.version, config.train.checkpoints_dir)
    dtype = frozen_dtype(config.train.mixed_precision, device)  # the reference encodes in fp16 on a GPU
    log.info(f"latent-space StableSyncNet: frames encoded by the VAE in {folder} ({dtype})")
    vae = TrainingVae(LatentVae.from_pretrained(folder, device, dtype), gradient_checkpointing=False)
    return VisualInput(vae=vae, latent_lower_half=model_config.lower_half)


def build_syncnet(config: SyncNetTrainConfig, log):
    from latentsync.models.stable_syncnet import StableSyncNet, StableSyncNetConfig, load_stable_syncnet

    model_config = StableSyncNetConfig.from_dict(config.model)
    if config.data.resolution != model_config.resolution:
        raise ValueError(f"data.resolution ({config.data.resolution}) must equal model.resolution "
                         f"({model_config.resolution}): the visual tower is built for that face size")
    if config.init_checkpoint:
        model = load_stable_syncnet(config.init_checkpoint, model_config).requires_grad_(True)
        log.info(f"StableSyncNet weights from {config.init_checkpoint}")
    else:
        model = StableSyncNet(model_config)
    model.enable_gradient_checkpointing(config.enable_gradient_checkpointing)
    return model.train()


@torch.no_grad()
def evaluate(model, loader, max_samples: int, device, to_visual: VisualInput = VisualInput()) -> dict[str, float]:
    """Mean BCE loss and accuracy over up to ``max_samples`` windows."""
    was_training = model.training
    model.eval()
    total_loss, correct, seen = 0.0, 0.0, 0
    for batch in loader:
        vision, audio = model(to_visual(batch, device), batch["mel"].to(device))
        y = batch["y"].to(device)
        total_loss += losses.cosine_bce(vision.float(), audio.float(), y).sum().item()
        correct += losses.sync_accuracy(vision, audio, y).item() * len(y)
        seen += len(y)
        if seen >= max_samples:
            break
    model.train(was_training)
    return {"val_loss": total_loss / max(seen, 1), "val_accuracy": correct / max(seen, 1)}


def train_syncnet(config: SyncNetTrainConfig, resume: bool = False, allow_config_change: bool = False
                  ) -> engine.TrainResult:
    """Run (or continue, with ``resume``) StableSyncNet training to ``config.train.max_train_steps`` steps (``resume``
    checks the config as :func:`~latentsync.training.unet_trainer.train_unet` does)."""
    from torch.utils.data import DataLoader

    from latentsync.training.config import config_to_dict
    from latentsync.training.data import SyncNetWindows

    run, data, opt = config.train, config.data, config.optimizer
    # 0. The run's own inputs, before any model loads or the run folder is made.
    train_clips = inputs.check_fileslist("data.train_fileslist", data.train_fileslist)
    validate = bool(data.val_fileslist and run.validate_every)
    val_clips = inputs.check_fileslist("data.val_fileslist", data.val_fileslist) if validate else []
    inputs.check_output_dir(run.output_dir)
    resolved = config_to_dict(config)
    changed = []
    if resume:
        engine.check_saved_state(run.output_dir)
        changed = engine.check_run_config(run.output_dir, resolved, allow_config_change)
    accelerator = engine.make_accelerator(run.output_dir, run.mixed_precision, run.gradient_accumulation_steps)
    log = engine.make_logger(run.output_dir, accelerator.is_main_process, "syncnet")
    engine.begin_run_files(accelerator, run.output_dir, resolved, resume, changed, log)
    torch.manual_seed(run.seed)

    # 1. Model, data, optimiser, wrapped by accelerate.
    model = build_syncnet(config, log)
    log.info(f"StableSyncNet parameters: {sum(p.numel() for p in model.parameters()):,}")
    to_visual = visual_input(config, accelerator.device, log)
    # Pixel variants cut the lower halves in the dataset; the latent one encodes whole faces (and cuts latents).
    lower_half = model.config.lower_half and model.config.pixel_space
    dataset = SyncNetWindows(train_clips, run.seed, data.resolution, lower_half,
                             data.samples_per_epoch, data.fixed_samples, logger_name=log.name,
                             skip_record=Path(run.output_dir) / engine.SKIPPED_CLIPS_FILE)
    loader = DataLoader(dataset, batch_size=data.batch_size, shuffle=False, drop_last=True,
                        num_workers=data.num_workers)
    val_loader = None
    if validate:
        val_set = SyncNetWindows(val_clips, run.seed + 1, data.resolution, lower_half,
                                 config.val_samples, logger_name=log.name,
                                 skip_record=Path(run.output_dir) / engine.SKIPPED_CLIPS_FILE)
        val_loader = DataLoader(val_set, batch_size=data.batch_size, num_workers=data.num_workers)
    optimizer = engine.make_optimizer(model.parameters(), opt, accelerator.num_processes)
    schedule = engine.make_lr_scheduler(optimizer, opt, run.max_train_steps, accelerator.num_processes)
    model, optimizer, loader, schedule = accelerator.prepare(model, optimizer, loader, schedule)
    step = engine.load_state(accelerator, run.output_dir) if resume else 0

    # 2. The loop: forward, backward, clip, step, then count / log / checkpoint, and validate.
    book = engine.StepBookkeeping(accelerator, run, log, engine.TrainResult(final_step=step), desc="syncnet")
    batches = engine.epochs(loader, dataset, step, run.gradient_accumulation_steps, accelerator)
    while not book.done:
        batch = next(batches)
        with accelerator.accumulate(model):
            frames = to_visual(batch, accelerator.device)  # pixels, or latents (no gradient)
            with accelerator.autocast():
                vision, audio = model(frames, batch["mel"])
            loss = losses.cosine_bce(vision.float(), audio.float(), batch["y"]).mean()
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), opt.max_grad_norm)
            optimizer.step()
            schedule.step()  # a no-op until the optimiser has stepped (gradient accumulation, fp16 overflow)
            optimizer.zero_grad(set_to_none=True)
        if book.record(loss, model) and val_loader is not None and book.validation_due:
            scores = evaluate(accelerator.unwrap_model(model), val_loader, config.val_samples, accelerator.device,
                              to_visual)
            log.info(f"validation step {book.step}: loss {scores['val_loss']:.4f} "
                     f"accuracy {scores['val_accuracy']:.3f}")
            book.record_validation(scores)
    return book.close()
