"""UNet training, stage 1 and stage 2 (reference ``scripts/train_unet.py``; README §7, training/README §4).

Per step: encode the target, masked and reference windows with the frozen VAE (posterior samples), add mixed noise
at a random timestep, predict the noise; the loss is the epsilon MSE, plus in stage 2 the one-step x0 estimate decoded
by the VAE (gradients flow through the decoder, checkpointed) scored by LPIPS on the lower half, TREPA on whole
frames and the frozen StableSyncNet. ``accelerate`` owns devices, mixed precision, accumulation, clipping, DDP and
the saved state.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from einops import rearrange

from latentsync.training import engine, inputs, losses
from latentsync.training.config import UNetTrainConfig, count_trainable_parameters, is_trainable


@dataclasses.dataclass
class FrozenNets:
    vae: object  # TrainingVae
    syncnet: torch.nn.Module | None = None
    lpips: torch.nn.Module | None = None
    videomae: torch.nn.Module | None = None


def build_unet(config: UNetTrainConfig, log, init_path: Path | None = None) -> torch.nn.Module:
    """The UNet to train: fresh, or from ``init_path`` (``init_unet`` resolved by
    :func:`~latentsync.training.models.resolve_init_unet`). A file without motion modules fills all but the net's
    motion modules; a file with motion modules the net lacks (released weights into stage 1 or the efficient stage)
    has exactly those dropped; anything else must match strictly."""
    from latentsync.models.unet import LatentSyncUNet
    from latentsync.models.unet_checkpoint import load_unet_weights_

    unet = LatentSyncUNet(config.model)
    if init_path is not None:
        report = load_unet_weights_(unet, init_path, allow_missing_motion_modules=config.model.use_motion_module,
                                    drop_absent_motion_modules=True)
        log.info(f"UNet weights from {config.init_unet} ({init_path}): {report.describe()}; "
                 f"this run counts its own steps from 0")
    if config.enable_gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    for name, param in unet.named_parameters():
        param.requires_grad_(is_trainable(name, config.trainable_modules))
    return unet.train()


def load_frozen_nets(config: UNetTrainConfig, vae_dir: Path, device: torch.device) -> FrozenNets:
    """The frozen VAE, StableSyncNet and VideoMAE in the mixed-precision dtype on an accelerator (float32 on the CPU),
    LPIPS in float32, as the reference holds them."""
    from latentsync.models.vae import LatentVae
    from latentsync.training.models import TrainingVae, auxiliary_path, frozen_dtype

    loss, aux_dir = config.loss, config.train.checkpoints_dir
    dtype = frozen_dtype(config.train.mixed_precision, device)
    vae = LatentVae.from_pretrained(vae_dir, device, dtype)
    nets = FrozenNets(vae=TrainingVae(vae, config.enable_gradient_checkpointing))
    if loss.use_syncnet and loss.sync_loss_weight:
        from latentsync.models.stable_syncnet import StableSyncNetConfig, load_stable_syncnet
        from latentsync.training.config import read_syncnet_model_section

        syncnet_config = StableSyncNetConfig.from_dict(read_syncnet_model_section(config.syncnet_config))
        if not syncnet_config.pixel_space and syncnet_config.resolution != config.data.resolution:
            raise ValueError(f"a latent-space StableSyncNet ({config.syncnet_config}) sees the UNet's latents "
                             f"directly: its model.resolution ({syncnet_config.resolution}) must equal "
                             f"data.resolution ({config.data.resolution})")
        path = auxiliary_path(config.syncnet_checkpoint, "stable_syncnet", aux_dir)
        nets.syncnet = load_stable_syncnet(path, syncnet_config, device, dtype)
        nets.syncnet.enable_gradient_checkpointing(config.enable_gradient_checkpointing)
    if loss.pixel_space_supervise and loss.perceptual_loss_weight:
        from latentsync.models.lpips import LPIPS

        nets.lpips = LPIPS.from_files(auxiliary_path(config.vgg_checkpoint, "vgg16", aux_dir)).to(device)  # float32
    if loss.pixel_space_supervise and loss.trepa_loss_weight:
        from latentsync.models.videomae import VideoMAEConfig, load_videomae

        path = auxiliary_path(config.videomae_checkpoint, "videomae_v2", aux_dir)
        nets.videomae = load_videomae(path, VideoMAEConfig(**config.videomae_model), device, dtype)
        nets.videomae.gradient_checkpointing = config.enable_gradient_checkpointing
    return nets


def unet_loss_terms(batch: dict[str, torch.Tensor], unet, nets: FrozenNets, config: UNetTrainConfig,
                    alphas_cumprod: torch.Tensor, latent_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The unweighted loss terms of one batch (see the module docstring); randomness from the batch's seeds."""
    loss = config.loss
    device = batch["gt"].device
    b, f = batch["gt"].shape[:2]
    generators = [torch.Generator().manual_seed(int(seed)) for seed in batch["seed"]]
    # 1. Latents of the target, masked and reference windows (frozen VAE, posterior samples).
    gt_latents = nets.vae.encode_videos(batch["gt"], generators)  # (b, 4, f, h, w)
    masked_latents = nets.vae.encode_videos(batch["masked"], generators)
    ref_latents = nets.vae.encode_videos(batch["ref"], generators)
    masks = latent_mask.to(device, gt_latents.dtype).expand(b, 1, f, *latent_mask.shape[-2:])  # (b, 1, f, h, w)
    # 2. Noise (shared over frames in part) and a timestep per video.
    if loss.use_mixed_noise:
        noise = losses.mixed_noise(tuple(gt_latents.shape), loss.mixed_noise_alpha, generators, device)
    else:
        noise = losses.shared_noise(tuple(gt_latents.shape), generators, device)
    timesteps = losses.sample_timesteps(generators, device)
    noisy = losses.add_noise(gt_latents, noise, timesteps, alphas_cumprod)
    # 3. Predict the noise from [noisy | mask | masked | reference] and the audio.
    pred_noise = unet(torch.cat([noisy, masks, masked_latents, ref_latents], dim=1), timesteps, batch["audio"])
    terms = {"recon": losses.epsilon_mse(pred_noise, noise)}
    # 4. Stage 2: the one-step x0 estimate, decoded by the VAE for the pixel-space terms, scored.
    pixel_syncnet = nets.syncnet is not None and nets.syncnet.config.pixel_space
    if not (loss.pixel_space_supervise or nets.syncnet is not None):
        return terms
    pred_latents = losses.one_step_x0(noisy, pred_noise, timesteps, alphas_cumprod)
    if loss.pixel_space_supervise or pixel_syncnet:
        pred = nets.vae.decode_with_grad(rearrange(pred_latents, "b c f h w -> (b f) c h w"))  # ((b f), 3, H, W)
        gt = rearrange(batch["gt"], "b f c h w -> (b f) c h w")
    if nets.lpips is not None:
        terms["lpips"] = losses.lpips_lower_half(nets.lpips, pred, gt)
    if nets.videomae is not None:
        from latentsync.models.videomae import trepa_loss

        to_video = lambda x: rearrange(x, "(b f) c h w -> b c f h w", b=b)
        terms["trepa"] = trepa_loss(nets.videomae, to_video(pred.float()), to_video(gt.float()))
    if nets.syncnet is not None:
        if pixel_syncnet:
            frames = losses.syncnet_frames(pred.float(), b, nets.syncnet.config.resolution)
        else:  # a latent-space StableSyncNet scores the predicted latents themselves, undecoded
            frames = losses.syncnet_latents(pred_latents.float(), nets.syncnet.config.lower_half)
        dtype = next(nets.syncnet.parameters()).dtype
        vision, audio = nets.syncnet(frames.to(dtype), batch["mel"].to(dtype))
        terms["sync"] = losses.sync_loss(vision.float(), audio.float())
    return terms


def loss_weights(config: UNetTrainConfig) -> dict[str, float]:
    loss = config.loss
    return {"recon": loss.recon_loss_weight, "lpips": loss.perceptual_loss_weight,
            "trepa": loss.trepa_loss_weight, "sync": loss.sync_loss_weight}


def train_unet(config: UNetTrainConfig, resume: bool = False, allow_config_change: bool = False
               ) -> engine.TrainResult:
    """Run (or continue, with ``resume``) UNet training to ``config.train.max_train_steps`` optimiser steps.

    ``resume`` checks the config against the run's ``config.yaml``: a change (other than
    :data:`~latentsync.training.engine.RESUME_MAY_CHANGE`) is an InputError unless ``allow_config_change``."""
    from diffusers import DDIMScheduler
    from torch.utils.data import DataLoader

    from latentsync.faces.mask import latent_mask
    from latentsync.inference.pipeline import DDIM_CONFIG
    from latentsync.training.config import config_to_dict
    from latentsync.training.data import UNetWindows
    from latentsync.training.models import resolve_init_unet, whisper_and_vae_paths

    run = config.train
    # 0. The run's own inputs, before any model loads or the run folder is made.
    train_clips = inputs.check_fileslist("data.train_fileslist", config.data.train_fileslist)
    inputs.check_output_dir(run.output_dir)
    resolved = config_to_dict(config)
    changed = []
    if resume:
        engine.check_saved_state(run.output_dir)
        changed = engine.check_run_config(run.output_dir, resolved, allow_config_change)
    validator = Validator(config) if run.validate_every else None  # checks its clips
    init_path = (resolve_init_unet(config.init_unet, run.checkpoints_dir, config.data.resolution)
                 if config.init_unet else None)
    whisper_path, vae_dir = whisper_and_vae_paths(config.version, run.checkpoints_dir)  # before the UNet is built
    accelerator = engine.make_accelerator(run.output_dir, run.mixed_precision, run.gradient_accumulation_steps)
    log = engine.make_logger(run.output_dir, accelerator.is_main_process, "unet")
    engine.begin_run_files(accelerator, run.output_dir, resolved, resume, changed, log)
    torch.manual_seed(run.seed)  # fresh weights are equal on every process (DDP also broadcasts them)

    # 1. Models: the UNet to train and the frozen helpers.
    unet = build_unet(config, log, init_path)
    trainable, total = count_trainable_parameters(config)
    params = [p for p in unet.parameters() if p.requires_grad]
    assert sum(p.numel() for p in params) == trainable
    log.info(f"trainable UNet parameters: {trainable:,} of {total:,} (patterns {list(config.trainable_modules)}); "
             f"{accelerator.num_processes} processes on {accelerator.device}, {accelerator.distributed_type.value}")
    nets = load_frozen_nets(config, vae_dir, accelerator.device)
    alphas_cumprod = DDIMScheduler.from_config(DDIM_CONFIG).alphas_cumprod  # (1000,) float32
    mask = torch.from_numpy(latent_mask(config.data.resolution))  # (h, w), 1 = keep

    # 2. Data, optimiser, and accelerate's wrapping.
    dataset = UNetWindows(train_clips, run.seed, config.data.resolution,
                          whisper_path, with_mel=nets.syncnet is not None,
                          samples_per_epoch=config.data.samples_per_epoch, fixed_samples=config.data.fixed_samples,
                          feature_cache_dir=Path(run.output_dir) / engine.FEATURE_CACHE_DIR, logger_name=log.name,
                          skip_record=Path(run.output_dir) / engine.SKIPPED_CLIPS_FILE)
    loader = DataLoader(dataset, batch_size=config.data.batch_size, shuffle=False, drop_last=True,
                        num_workers=config.data.num_workers)
    opt = config.optimizer
    optimizer = engine.make_optimizer(params, opt, accelerator.num_processes)
    schedule = engine.make_lr_scheduler(optimizer, opt, run.max_train_steps, accelerator.num_processes)
    unet, optimizer, loader, schedule = accelerator.prepare(unet, optimizer, loader, schedule)
    step = engine.load_state(accelerator, run.output_dir) if resume else 0
    if resume:
        log.info(f"resumed at step {step}")

    # 3. The loop: forward, backward, clip, step, then count / log / checkpoint, and validate.
    weights = loss_weights(config)
    book = engine.StepBookkeeping(accelerator, run, log, engine.TrainResult(final_step=step), desc="unet")
    batches = engine.epochs(loader, dataset, step, run.gradient_accumulation_steps, accelerator)
    while not book.done:
        batch = next(batches)
        with accelerator.accumulate(unet):
            with accelerator.autocast():
                terms = unet_loss_terms(batch, unet, nets, config, alphas_cumprod, mask)
            loss = losses.total_loss(terms, weights)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(params, opt.max_grad_norm)
            optimizer.step()
            schedule.step()  # a no-op until the optimiser has stepped (gradient accumulation, fp16 overflow)
            optimizer.zero_grad(set_to_none=True)
        if book.record(loss, unet, terms) and book.validation_due:
            book.record_validation(validator(accelerator.unwrap_model(unet), nets.vae.vae, book.step, log))
    return book.close()


class Validator:
    """Renders ``data.val_video_path`` lip-synced to ``data.val_audio_path`` with the inference pipeline and scores
    it (Sync-C / Sync-D with the original SyncNet). Each call renders with the UNet as trained so far and the
    training's frozen VAE (no second copy); Whisper, the face backend and the SyncNet scorer are loaded at the first
    validation and kept for the run, as are the input video's scores against the same speech (the mark to beat,
    logged beside every render's). The clips are checked when it is made."""

    def __init__(self, config: UNetTrainConfig) -> None:
        inputs.check_validation_clips(config.train.validate_every, config.data.val_video_path,
                                      config.data.val_audio_path)
        self.config = config
        self.pipeline = None  # built by the first call
        self.input_scores = None  # SyncScore of the input video, measured by the first call

    def build_pipeline(self, unet, vae):
        from latentsync.checkpoints import resolve_sync_scoring
        from latentsync.faces import load_landmark_backend
        from latentsync.models.whisper import WhisperAudioEncoder
        from latentsync.inference.pipeline import LipSyncPipeline
        from latentsync.sync import SyncScorer
        from latentsync.training.models import whisper_file

        device, version, checkpoints_dir = unet.device, self.config.version, self.config.train.checkpoints_dir
        whisper_path = whisper_file(version, checkpoints_dir)
        backend, face_dir, syncnet_path = resolve_sync_scoring(version, checkpoints_dir)
        return LipSyncPipeline(
            unet=unet, audio_encoder=WhisperAudioEncoder.from_checkpoint(whisper_path, device), vae=vae,
            face_backend=load_landmark_backend(backend, device=device, weights_dir=face_dir),
            resolution=self.config.data.resolution, device=device, dtype=unet.dtype, version=version,
            sync_scorer=SyncScorer.from_checkpoint(syncnet_path, device))

    def __call__(self, unet, vae, step: int, log) -> dict[str, float]:
        """Render and score at ``step`` with ``unet`` and ``vae`` (a frozen :class:`LatentVae`)."""
        from latentsync.inference.pipeline import LipSyncOptions

        config = self.config
        output = Path(config.train.output_dir) / engine.VALIDATION_DIR / f"step-{step}.mp4"
        options = LipSyncOptions(steps=config.validation_steps, guidance_scale=config.validation_guidance,
                                 seed=config.train.seed, score_sync=True, score_input=self.input_scores is None)
        was_training = unet.training
        try:
            if self.pipeline is None:
                self.pipeline = self.build_pipeline(unet, vae)
            self.pipeline.unet = unet.eval()  # the module being trained (the same one at every step, but say so)
            with torch.no_grad():
                result = self.pipeline(config.data.val_video_path, config.data.val_audio_path, output, options)
        finally:
            unet.train(was_training)
        if self.input_scores is None:
            self.input_scores = result.sync_before
        scores = {"sync_c": result.sync_after.confidence, "sync_d": result.sync_after.min_distance}
        log.info(f"validation step {step}: {output} Sync-C {scores['sync_c']:.3f} Sync-D {scores['sync_d']:.3f} "
                 f"(input video: Sync-C {self.input_scores.confidence:.3f} "
                 f"Sync-D {self.input_scores.min_distance:.3f})")
        if not math.isfinite(scores["sync_c"]):
            log.warning("validation Sync-C is not finite")
        return scores
