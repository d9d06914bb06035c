"""The shipped training configs: reference values, trainable-parameter counts (meta device), stage 1 -> stage 2."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from latentsync.training.config import (
    count_trainable_parameters,
    load_syncnet_train_config,
    load_unet_train_config,
    unet_config_from_dict,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name,trainable,total", [
    ("stage1", 849_962_244, 849_962_244), ("stage1_512", 849_962_244, 849_962_244),
    ("stage2", 674_792_320, 1_267_099_844), ("stage2_512", 674_792_320, 1_267_099_844),
    ("stage2_efficient", 284_660_480, 1_100_244_804),
])
def test_trainable_parameter_counts_equal_the_reference(name, trainable, total):
    assert count_trainable_parameters(load_unet_train_config(CONFIGS / "unet" / f"{name}.yaml")) == (trainable, total)


def test_unet_configs_hold_the_reference_values():
    stage1, stage2 = (load_unet_train_config(CONFIGS / "unet" / f"{n}.yaml") for n in ("stage1", "stage2"))
    efficient = load_unet_train_config(CONFIGS / "unet" / "stage2_efficient.yaml")
    big = load_unet_train_config(CONFIGS / "unet" / "stage2_512.yaml")
    assert not stage1.model.use_motion_module and not stage1.loss.pixel_space_supervise
    assert not stage1.loss.use_syncnet and stage1.trainable_modules == ()
    loss = stage2.loss
    assert (loss.recon_loss_weight, loss.sync_loss_weight, loss.perceptual_loss_weight, loss.trepa_loss_weight) == \
        (1.0, 0.05, 0.1, 10.0)
    assert loss.use_mixed_noise and loss.mixed_noise_alpha == 1.0
    assert stage2.trainable_modules == ("motion_modules.", "attentions.")
    assert (stage2.optimizer.lr, stage2.optimizer.max_grad_norm, stage2.train.seed) == (1e-5, 1.0, 1247)
    for config in (stage1, stage2, efficient, big):  # the reference's schedule keys, with its values
        optimizer = config.optimizer
        assert (optimizer.lr_scheduler, optimizer.lr_warmup_steps, optimizer.scale_lr) == ("constant", 0, False)
    assert stage2.model.motion_module_kwargs.temporal_position_encoding_max_len == 24
    assert efficient.model.motion_module_decoder_only and efficient.loss.trepa_loss_weight == 0
    assert efficient.trainable_modules == ("motion_modules.", "attn2.")
    assert big.data.resolution == 512 and big.model.resolution == 512 and stage2.data.resolution == 256


def test_syncnet_configs_load_with_the_reference_values():
    from latentsync.models.stable_syncnet import StableSyncNetConfig, syncnet_16_pixel_attn

    config = load_syncnet_train_config(CONFIGS / "syncnet" / "syncnet_16_pixel_attn.yaml")
    assert StableSyncNetConfig.from_dict(config.model) == syncnet_16_pixel_attn()
    assert (config.data.batch_size, config.optimizer.lr, config.train.seed, config.train.save_every) == \
        (256, 1e-5, 42, 2500)
    for name in ("syncnet_16_pixel", "syncnet_16_latent"):
        load_syncnet_train_config(CONFIGS / "syncnet" / f"{name}.yaml")


def test_unknown_keys_and_bad_values_are_named():
    with pytest.raises(ValueError, match="learning_rate"):
        unet_config_from_dict({"optimizer": {"learning_rate": 1}})
    with pytest.raises(ValueError, match="mixed_precision"):
        unet_config_from_dict({"train": {"mixed_precision": "fp8"}})
    with pytest.raises(ValueError, match="optimizer.name.*'adam'"):
        unet_config_from_dict({"optimizer": {"name": "adam"}})
    with pytest.raises(ValueError, match="optimizer.lr_scheduler.*'exponential'"):
        unet_config_from_dict({"optimizer": {"lr_scheduler": "exponential"}})
    with pytest.raises(ValueError, match="optimizer.lr_warmup_steps.*-1"):
        unet_config_from_dict({"optimizer": {"lr_warmup_steps": -1}})


def test_malformed_yaml_is_a_one_line_input_error(tmp_path, capsys):
    from latentsync.cli_common import EXIT_INPUT
    from latentsync.training.__main__ import main

    config = tmp_path / "stage2.yaml"
    config.write_text("optimizer:\n  lr: [1e-5\n", encoding="utf-8")  # an unclosed list
    with pytest.raises(ValueError, match=r"stage2.yaml is not valid YAML at line 3, column 1: "):
        load_unet_train_config(config)
    assert main(["unet", str(config)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: stage2.yaml is not valid YAML") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_lr_scheduler_names_are_diffusers_schedules():
    from diffusers.optimization import SchedulerType

    from latentsync.training.config import LR_SCHEDULER_CHOICES

    assert set(LR_SCHEDULER_CHOICES) <= {kind.value for kind in SchedulerType}


def test_schedule_is_counted_in_optimiser_steps_on_any_number_of_processes():
    """accelerate steps a prepared schedule once per process at every optimiser step (unsplit batches):
    make_lr_scheduler's counts absorb that, so warm-up and decay take the same optimiser steps."""
    from latentsync.training.engine import make_lr_scheduler, make_optimizer

    config = unet_config_from_dict({"optimizer": {"lr": 0.8, "lr_scheduler": "linear", "lr_warmup_steps": 2}}).optimizer
    lrs = {}
    for processes in (1, 2, 4):
        optimizer = make_optimizer([torch.nn.Parameter(torch.ones(1))], config)
        schedule = make_lr_scheduler(optimizer, config, max_train_steps=6, num_processes=processes)
        lrs[processes] = [optimizer.param_groups[0]["lr"]]
        for _ in range(6):
            optimizer.step()
            for _ in range(processes):  # what accelerate's AcceleratedScheduler.step does
                schedule.step()
            lrs[processes].append(optimizer.param_groups[0]["lr"])
    # linear: 0 -> lr over the 2 warm-up steps, then down to 0 at step 6
    assert lrs[1] == pytest.approx([0.0, 0.4, 0.8, 0.6, 0.4, 0.2, 0.0])
    assert lrs[2] == pytest.approx(lrs[1]) and lrs[4] == pytest.approx(lrs[1])


def test_scale_lr_multiplies_by_the_number_of_processes():
    from latentsync.training.engine import make_optimizer

    config = unet_config_from_dict({"optimizer": {"lr": 1e-5, "scale_lr": True}}).optimizer
    optimizer = make_optimizer([torch.nn.Parameter(torch.ones(1))], config, num_processes=8)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(8e-5)
    unscaled = dataclasses.replace(config, scale_lr=False)
    assert make_optimizer([torch.nn.Parameter(torch.ones(1))], unscaled, 8).param_groups[0]["lr"] == 1e-5


def test_the_optimizer_option_builds_adamw_by_default_and_plain_sgd_on_request():
    from latentsync.training.engine import make_optimizer

    param = torch.nn.Parameter(torch.ones(3))
    default = make_optimizer([param], unet_config_from_dict({"optimizer": {"lr": 0.5}}).optimizer)
    assert isinstance(default, torch.optim.AdamW) and default.param_groups[0]["lr"] == 0.5
    sgd = make_optimizer([param], unet_config_from_dict(
        {"optimizer": {"name": "sgd", "lr": 0.5, "weight_decay": 0.0}}).optimizer)
    param.grad = torch.tensor([1.0, -2.0, 0.25])
    sgd.step()  # plain SGD: w - lr * g
    assert torch.equal(param.detach(), torch.tensor([0.5, 2.0, 0.875]))


def test_stage1_checkpoint_fills_a_stage2_net_except_its_motion_modules(tmp_path):
    import dataclasses

    from latentsync.errors import CheckpointError
    from latentsync.models.unet import LatentSyncUNet
    from latentsync.models.unet_checkpoint import load_unet_weights_, save_unet_checkpoint
    from latentsync.models.unet_config import tiny_unet_config

    torch.manual_seed(0)
    stage1 = LatentSyncUNet(dataclasses.replace(tiny_unet_config(), use_motion_module=False))
    path = save_unet_checkpoint(stage1, tmp_path / "stage1.pt")
    stage2 = LatentSyncUNet(tiny_unet_config())
    report = load_unet_weights_(stage2, path, allow_missing_motion_modules=True)
    kept = report.kept
    assert kept and all("motion_modules." in name for name in kept)
    assert len(kept) == len(stage2.state_dict()) - len(stage1.state_dict())
    assert report.loaded == len(stage1.state_dict()) and report.dropped == {} and report.global_step == 0
    for name, tensor in stage1.state_dict().items():
        assert torch.equal(stage2.state_dict()[name], tensor)
    with pytest.raises(CheckpointError, match="missing"):
        load_unet_weights_(LatentSyncUNet(tiny_unet_config()), path)  # strict unless asked
    partial = {k: v for k, v in stage1.state_dict().items() if not k.startswith("conv_out")}
    torch.save({"state_dict": partial, "global_step": 0}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="does not match"):
        load_unet_weights_(LatentSyncUNet(tiny_unet_config()), tmp_path / "partial.pt",
                           allow_missing_motion_modules=True)


def test_gradient_checkpointing_leaves_the_unet_output_and_gradients_unchanged():
    from latentsync.models.unet import LatentSyncUNet, randomize_zero_init_
    from latentsync.models.unet_config import tiny_unet_config

    torch.manual_seed(0)
    unet = randomize_zero_init_(LatentSyncUNet(tiny_unet_config()), torch.Generator().manual_seed(0))
    x = torch.randn(1, 13, 2, 8, 8)
    audio = torch.randn(1, 2, 3, 24)
    results = []
    for enabled in (False, True):
        unet.zero_grad()
        unet.enable_gradient_checkpointing(enabled)
        out = unet(x, 10, audio)
        out.square().mean().backward()
        results.append((out.detach(), unet.down_blocks[0].attentions[0].proj_in.weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_frozen_networks_take_the_mixed_precision_dtype_on_an_accelerator_only():
    """As the reference: VAE, StableSyncNet and the ViT-g in fp16 / bf16 on a GPU (float32 with mixed_precision "no");
    float32 on the CPU, where half-precision convolutions are slow or missing. LPIPS is float32 everywhere."""
    from latentsync.training.models import frozen_dtype

    assert frozen_dtype("fp16", "cuda") == torch.float16 and frozen_dtype("bf16", "cuda:1") == torch.bfloat16
    assert frozen_dtype("no", "cuda") == torch.float32
    assert {frozen_dtype(mp, "cpu") for mp in ("no", "fp16", "bf16")} == {torch.float32}
