"""The latent-space StableSyncNet (syncnet_16_latent): whole faces encoded by the frozen VAE, 16 x 4 = 64 channels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from latentsync.training.config import load_syncnet_train_config
from latentsync.training.data import SyncNetWindows
from latentsync.training.inputs import check_fileslist
from latentsync.training.models import vae_folder
from latentsync.training.syncnet_trainer import VisualInput, train_syncnet
from latentsync.training.tiny import write_synthetic_dataset
from latentsync.training.tiny_latent import TINY_LATENT_RESOLUTION, write_tiny_latent_syncnet_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
REFERENCE_SCALE = 0.18215  # the reference's latent scale (README §2.2), written out here to check the trainer's


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent-syncnet")
    train = write_synthetic_dataset(root / "train", n_clips=2, seconds=2.4, resolution=TINY_LATENT_RESOLUTION)
    val = write_synthetic_dataset(root / "val", n_clips=1, seconds=2.4, resolution=TINY_LATENT_RESOLUTION,
                                  first_seed=100)
    return train, val


def test_latent_input_is_the_reference_encoding_of_whole_faces(tiny_checkpoints, clips, one_thread):
    """Each frame of the whole face -> VAE posterior sample x 0.18215; channels frame-major (frame x 4 + c)."""
    from latentsync.models.vae import LatentVae
    from latentsync.training.models import TrainingVae

    dataset = SyncNetWindows(check_fileslist("data.train_fileslist", clips[0]), seed=0, resolution=TINY_LATENT_RESOLUTION, lower_half=False,
                             samples_per_epoch=2)
    batch = {k: torch.stack([dataset[i][k] for i in range(2)]) for k in ("frames", "seed")}
    assert batch["frames"].shape == (2, 48, 32, 32)  # whole faces, not lower halves
    vae = LatentVae.from_pretrained(vae_folder("1.5", str(tiny_checkpoints)))
    latents = VisualInput(vae=TrainingVae(vae, gradient_checkpointing=False))(batch, torch.device("cpu"))
    assert latents.shape == (2, 64, 4, 4) and latents.dtype == torch.float32

    # The same with diffusers' AutoencoderKL by hand: per frame, mean + std x one (1, 4, h, w) draw of the item's
    # generator, in frame order, times the scale; shift 0.
    for item in range(2):
        frames = batch["frames"][item].reshape(16, 3, 32, 32)  # channel = frame * 3 + rgb
        with torch.no_grad():
            posterior = vae.model.encode(frames).latent_dist
        generator = torch.Generator().manual_seed(int(batch["seed"][item]))
        noise = torch.cat([torch.randn((1, 4, 4, 4), generator=generator) for _ in range(16)])
        expected = (posterior.mean + posterior.std * noise) * REFERENCE_SCALE  # (16, 4, 4, 4)
        torch.testing.assert_close(latents[item], expected.reshape(64, 4, 4), atol=1e-5, rtol=1e-5)
    # The lower-half option cuts the latents (rows h/2..), as the reference does after encoding.
    lower = VisualInput(vae=TrainingVae(vae, False), latent_lower_half=True)(batch, torch.device("cpu"))
    torch.testing.assert_close(lower, latents[:, :, 2:, :])


def test_the_full_size_latent_config_takes_the_trainers_input():
    """configs/syncnet/syncnet_16_latent.yaml: 64 x 32 x 32 latents of 256 px faces reach 1 x 1 (on the meta
    device: shapes only), with the reference's 65,544,416 parameters."""
    from latentsync.models.stable_syncnet import StableSyncNet, StableSyncNetConfig

    config = load_syncnet_train_config(CONFIGS / "syncnet" / "syncnet_16_latent.yaml")
    model_config = StableSyncNetConfig.from_dict(config.model)
    assert not model_config.pixel_space and not model_config.lower_half and config.version == "1.5"
    with torch.device("meta"):
        net = StableSyncNet(model_config)
        vision, audio = net(torch.empty(2, 16 * 4, 256 // 8, 256 // 8), torch.empty(2, 1, 80, 52))
    assert vision.shape == audio.shape == (2, 1024)
    assert sum(p.numel() for p in net.parameters()) == 65_544_416


STEPS = 4  # measured on 4 fixed windows: BCE 0.547 -> 0.042


@pytest.mark.slow
def test_latent_syncnet_trains_validates_and_writes_an_official_checkpoint(tiny_checkpoints, clips, tmp_path,
                                                                            one_thread):
    from latentsync.models.stable_syncnet import StableSyncNet, StableSyncNetConfig, load_stable_syncnet

    train, val = clips
    path = write_tiny_latent_syncnet_yaml(tmp_path / "latent.yaml", tiny_checkpoints, train, tmp_path / "run",
                                          max_train_steps=STEPS, validate_every=STEPS, log_every=1)
    config = load_syncnet_train_config(path)
    # The same 4 windows every step (fixed_samples): the loss falls only if the net learns from the latents.
    config = dataclasses.replace(config, val_samples=8, data=dataclasses.replace(
        config.data, val_fileslist=str(val), fixed_samples=True, samples_per_epoch=4, batch_size=4))
    result = train_syncnet(config)
    assert sorted(result.losses) == list(range(1, STEPS + 1))
    assert result.losses[STEPS] < 0.5 * result.losses[1], result.losses
    scores = result.validations[STEPS]
    assert 0 <= scores["val_accuracy"] <= 1 and scores["val_loss"] > 0
    log = (tmp_path / "run" / "train.log").read_text()
    assert "latent-space StableSyncNet: frames encoded by the VAE in" in log
    assert f"validation step {STEPS}: loss {scores['val_loss']:.4f}" in log

    checkpoint = torch.load(result.checkpoints[-1], map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == STEPS
    model_config = StableSyncNetConfig.from_dict(config.model)
    model = load_stable_syncnet(result.checkpoints[-1], model_config)  # strict
    torch.manual_seed(config.train.seed)  # the trainer's initialisation, to show the weights moved
    fresh = StableSyncNet(model_config).state_dict()
    assert sum(not torch.equal(fresh[k], v) for k, v in model.state_dict().items()) > len(fresh) // 2
    # The visual embedding depends on the latents (no tower stage normalises single values into constants).
    latents = torch.randn(2, 64, 4, 4, generator=torch.Generator().manual_seed(0))
    vision, _ = model(latents, torch.zeros(2, 1, 80, 52))
    assert (vision[0] - vision[1]).abs().max() > 1e-3


@pytest.mark.slow
def test_unet_sync_loss_through_a_latent_syncnet(tiny_checkpoints, clips, tmp_path, one_thread):
    """A latent StableSyncNet as the UNet's sync critic scores the one-step x0 latents themselves (no VAE decode)."""
    from latentsync.models.stable_syncnet import StableSyncNet, StableSyncNetConfig
    from latentsync.training.config import unet_config_from_dict
    from latentsync.training.tiny import tiny_unet_train_config
    from latentsync.training.tiny_latent import tiny_latent_syncnet_model_section
    from latentsync.training.unet_trainer import train_unet

    syncnet_yaml = write_tiny_latent_syncnet_yaml(tmp_path / "latent.yaml", tiny_checkpoints, clips[0], tmp_path / "x")
    torch.manual_seed(0)
    net = StableSyncNet(StableSyncNetConfig.from_dict(tiny_latent_syncnet_model_section()))
    torch.save({"state_dict": net.state_dict(), "global_step": 0}, tmp_path / "latent_syncnet.pt")
    config = tiny_unet_train_config(
        tiny_checkpoints, clips[0], tmp_path / "unet", syncnet_yaml,
        syncnet_checkpoint=str(tmp_path / "latent_syncnet.pt"), enable_gradient_checkpointing=False,
        **{"loss.pixel_space_supervise": False, "train.max_train_steps": 2, "data.samples_per_epoch": 2})
    result = train_unet(unet_config_from_dict(config))
    log = (tmp_path / "unet" / "train.log").read_text()
    for step in (1, 2):
        line = next(line for line in log.splitlines() if f"step {step} loss {result.losses[step]:.5f}" in line)
        recon, sync = (float(line.split(f"{name} ")[1].split()[0].rstrip(")")) for name in ("recon", "sync"))
        assert "lpips" not in line and "trepa" not in line
        assert sync > 0 and result.losses[step] == pytest.approx(recon + 0.05 * sync, abs=1e-4)


def test_a_latent_syncnet_must_match_the_unet_resolution(tiny_checkpoints, clips, tmp_path):
    from latentsync.training.config import unet_config_from_dict
    from latentsync.training.tiny import tiny_unet_train_config
    from latentsync.training.unet_trainer import load_frozen_nets

    syncnet_yaml = write_tiny_latent_syncnet_yaml(tmp_path / "latent.yaml", tiny_checkpoints, clips[0], tmp_path / "x")
    config = unet_config_from_dict(tiny_unet_train_config(
        tiny_checkpoints, clips[0], tmp_path / "unet", syncnet_yaml,
        **{"loss.pixel_space_supervise": False, "data.resolution": 64}))
    with pytest.raises(ValueError, match=r"model.resolution \(32\) must equal data.resolution \(64\)"):
        load_frozen_nets(config, vae_folder("1.5", str(tiny_checkpoints)), torch.device("cpu"))
