"""StableSyncNet training (reference ``scripts/train_syncnet.py``; README §5.1, training/README §1.3).

Half the windows pair the audio with its own frames (label 1), half with frames from another start of the same clip
(label 0); the loss is the BCE of the embeddings' cosine similarity. Every ``validate_every`` steps the accuracy
(cos > 0.5 means "in sync") and loss on ``val_samples`` windows of ``data.val_fileslist`` are logged.
"""

from __future__ import annotations

import torch

from latentsync.training import engine, losses
from latentsync.training.config import SyncNetTrainConfig


def build_syncnet(config: SyncNetTrainConfig, log):
    from latentsync.models.stable_syncnet import StableSyncNet, StableSyncNetConfig, load_stable_syncnet

    model_config = StableSyncNetConfig.from_dict(config.model)
    if not model_config.pixel_space:
        raise ValueError("training the latent-space StableSyncNet (syncnet_16_latent) is not supported; "
                         "use a pixel config (syncnet_16_pixel_attn or syncnet_16_pixel)")
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
def evaluate(model, loader, max_samples: int, device) -> dict[str, float]:
    """Mean BCE loss and accuracy over up to ``max_samples`` windows."""
    was_training = model.training
    model.eval()
    total_loss, correct, seen = 0.0, 0.0, 0
    for batch in loader:
        vision, audio = model(batch["frames"].to(device), batch["mel"].to(device))
        y = batch["y"].to(device)
        total_loss += losses.cosine_bce(vision.float(), audio.float(), y).sum().item()
        correct += losses.sync_accuracy(vision, audio, y).item() * len(y)
        seen += len(y)
        if seen >= max_samples:
            break
    model.train(was_training)
    return {"val_loss": total_loss / max(seen, 1), "val_accuracy": correct / max(seen, 1)}


def train_syncnet(config: SyncNetTrainConfig, resume: bool = False) -> engine.TrainResult:
    """Run (or continue, with ``resume``) StableSyncNet training to ``config.train.max_train_steps`` steps."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from latentsync.training.data import SyncNetWindows, read_clip_paths

    run, data, opt = config.train, config.data, config.optimizer
    accelerator = engine.make_accelerator(run.output_dir, run.mixed_precision, run.gradient_accumulation_steps)
    log = engine.make_logger(run.output_dir, accelerator.is_main_process, "syncnet")
    torch.manual_seed(run.seed)

    # 1. Model, data, optimiser, wrapped by accelerate.
    model = build_syncnet(config, log)
    log.info(f"StableSyncNet parameters: {sum(p.numel() for p in model.parameters()):,}")
    lower_half = model.config.lower_half
    dataset = SyncNetWindows(read_clip_paths(data.train_fileslist), run.seed, data.resolution, lower_half,
                             data.samples_per_epoch, data.fixed_samples)
    loader = DataLoader(dataset, batch_size=data.batch_size, shuffle=False, drop_last=True,
                        num_workers=data.num_workers)
    val_loader = None
    if data.val_fileslist and run.validate_every:
        val_set = SyncNetWindows(read_clip_paths(data.val_fileslist), run.seed + 1, data.resolution, lower_half,
                                 config.val_samples)
        val_loader = DataLoader(val_set, batch_size=data.batch_size, num_workers=data.num_workers)
    optimizer = engine.make_optimizer(model.parameters(), opt)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    step = engine.load_state(accelerator, run.output_dir) if resume else 0
    result = engine.TrainResult(final_step=step)

    # 2. The loop.
    progress = tqdm(total=run.max_train_steps, initial=step, disable=not accelerator.is_main_process, desc="syncnet")
    step_losses: list[float] = []
    batches = engine.epochs(loader, dataset, step, run.gradient_accumulation_steps, accelerator)
    while step < run.max_train_steps:
        batch = next(batches)
        with accelerator.accumulate(model):
            with accelerator.autocast():
                vision, audio = model(batch["frames"], batch["mel"])
            loss = losses.cosine_bce(vision.float(), audio.float(), batch["y"]).mean()
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), opt.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        step_losses.append(accelerator.reduce(loss.detach().float(), "mean").item())
        if not accelerator.sync_gradients:
            continue
        step += 1
        result.losses[step] = sum(step_losses) / len(step_losses)
        step_losses = []
        progress.update(1)
        if step % run.log_every == 0 or step == run.max_train_steps:
            log.info(f"step {step} loss {result.losses[step]:.5f}")
            accelerator.log({"loss": result.losses[step]}, step=step)
        if step % run.save_every == 0 or step == run.max_train_steps:
            engine.save_state(accelerator, run.output_dir, step)
            if accelerator.is_main_process:
                path = engine.save_official_checkpoint(accelerator.unwrap_model(model).state_dict(), run.output_dir, step)
                result.checkpoints.append(path)
        if val_loader is not None and step % run.validate_every == 0 and accelerator.is_main_process:
            scores = evaluate(accelerator.unwrap_model(model), val_loader, config.val_samples, accelerator.device)
            result.validations[step] = scores
            log.info(f"validation step {step}: loss {scores['val_loss']:.4f} accuracy {scores['val_accuracy']:.3f}")
            accelerator.log(scores, step=step)
    progress.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    result.final_step = step
    return result
