"""CachedUNet: the reference's DeepCache loop (golden), interval 1 = the plain UNet, the caching schedule."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler
from safetensors import safe_open
from safetensors.torch import load_file

from latentsync.models.deepcache import CachedUNet
from latentsync.models.unet import LatentSyncUNet, randomize_zero_init_
from latentsync.models.unet_config import tiny_unet_config
from latentsync.inference.pipeline import DDIM_CONFIG

GOLDEN_TOLERANCE = 1e-4  # the bar; measured on CPU fp32: 0 (bit-identical to the reference's loop)
GOLDEN_PLAIN_VS_CACHED_MIN_DIFF = 1.0  # README §14: the two golden outputs differ by up to 2.4


@pytest.fixture(scope="module")
def golden(reference_dir) -> dict[str, torch.Tensor]:
    return load_file(str(reference_dir / "deepcache_golden.safetensors"))


@pytest.fixture(scope="module")
def golden_meta(reference_dir) -> dict[str, str]:
    with safe_open(str(reference_dir / "deepcache_golden.safetensors"), "pt") as f:
        return f.metadata()


@torch.no_grad()
def reference_loop(net, golden: dict[str, torch.Tensor], *, steps: int, guidance: float, frames_per_call: int,
                   frames: int | None = None) -> torch.Tensor:  # fmt: skip
    """The reference pipeline's denoising loop (README §4.9 / §14): CFG with zero audio first."""
    scheduler = DDIMScheduler.from_config(DDIM_CONFIG)
    scheduler.set_timesteps(steps)
    if isinstance(net, CachedUNet):
        net.set_timesteps(scheduler.timesteps)
    total = frames or golden["input.init_latents"].shape[2]
    outputs = []
    for start in range(0, total, frames_per_call):
        window = slice(start, start + frames_per_call)
        latents = golden["input.init_latents"][:, :, window] * scheduler.init_noise_sigma
        condition = torch.cat([golden["input.mask_latents"][:, :, window],
                               golden["input.masked_image_latents"][:, :, window],
                               golden["input.ref_latents"][:, :, window]], dim=1)  # (1, 9, f, h, w)
        audio = golden["input.audio_embeds"][window]  # (f, 50, d)
        condition = torch.cat([condition] * 2)
        audio = torch.cat([torch.zeros_like(audio), audio])  # unconditional first, batch-major
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            eps = net(torch.cat([model_input, condition], dim=1), t, audio)
            uncond, cond = eps.chunk(2)
            latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents).prev_sample
        outputs.append(latents)
    return torch.cat(outputs, dim=2)


def golden_settings(meta: dict[str, str]) -> dict:
    assert meta["deepcache"] == "cache_interval=3, cache_branch_id=0, skip_mode=uniform"
    return {"steps": int(meta["steps"]), "guidance": float(meta["guidance_scale"]),
            "frames_per_call": int(meta["frames_per_call"])}


def test_golden_outputs_differ(golden) -> None:
    """Guard: the cached golden is far from the plain one, so matching it tests the caching itself."""
    diff = (golden["output.latents_plain"] - golden["output.latents_deepcache_i3_b0"]).abs().max().item()
    assert diff > GOLDEN_PLAIN_VS_CACHED_MIN_DIFF


@pytest.mark.slow  # 40 UNet calls (~15 s on 2 free cores); checks the loop below is the reference's
def test_plain_loop_matches_reference(golden, golden_meta, golden_unet) -> None:
    out = reference_loop(golden_unet, golden, **golden_settings(golden_meta))
    assert (out - golden["output.latents_plain"]).abs().max().item() <= GOLDEN_TOLERANCE


@pytest.mark.slow  # 40 UNet calls, 26 of them cached (~8 s on 2 free cores): the contract of issue 14
def test_cached_loop_matches_reference_deepcache(golden, golden_meta, golden_unet) -> None:
    net = CachedUNet(golden_unet, cache_interval=3, cache_branch_id=0)
    out = reference_loop(net, golden, **golden_settings(golden_meta))
    assert out.shape == (1, 4, 24, 16, 16)
    assert (out - golden["output.latents_deepcache_i3_b0"]).abs().max().item() <= GOLDEN_TOLERANCE


def test_interval_one_loop_is_the_plain_loop_bit_for_bit(golden, golden_meta, golden_unet) -> None:
    settings = golden_settings(golden_meta) | {"steps": 3, "frames_per_call": 2, "frames": 4}
    plain = reference_loop(golden_unet, golden, **settings)
    assert torch.equal(reference_loop(CachedUNet(golden_unet, cache_interval=1), golden, **settings), plain)


# ---- behaviour on a random tiny net (no reference needed) ---------------------------------------------
@pytest.fixture(scope="module")
def tiny_unet() -> LatentSyncUNet:
    return randomize_zero_init_(LatentSyncUNet(tiny_unet_config()), torch.Generator().manual_seed(0)).eval()


def inputs(f: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A CFG-shaped batch of ``f`` frames of 8x8 latents (8 -> 4 -> 2 -> 1 through the four levels)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, 13, f, 8, 8, generator=gen), torch.randn(2 * f, 50, 24, generator=gen)


@torch.no_grad()
@pytest.mark.parametrize("branch", [0, 1, 2, 3, 5, 11])
def test_full_steps_are_the_plain_unet_bit_for_bit(tiny_unet, branch) -> None:
    """The submodule walk on a full step computes exactly LatentSyncUNet.forward, for every branch."""
    x, audio = inputs()
    net = CachedUNet(tiny_unet, cache_interval=3, cache_branch_id=branch, timesteps=[900, 600, 300, 1])
    assert torch.equal(net(x, 900, audio), tiny_unet(x, 900, audio))
    net(x, 600, audio)  # a cached step in between
    net(x, 300, audio)
    assert torch.equal(net(x, 1, audio), tiny_unet(x, 1, audio))  # index 3: full again


@torch.no_grad()
def test_schedule_of_full_and_cached_steps(tiny_unet) -> None:
    """Indices 0, 3, 6, ... are full (the start is the first index seen); the rest reuse the store."""
    x, audio = inputs(seed=2)
    x2, _ = inputs(seed=3)
    timesteps = list(range(1000, 0, -140))  # 8 steps
    net = CachedUNet(tiny_unet, cache_interval=3, timesteps=timesteps)
    full = [i for i, t in enumerate(timesteps)
            if torch.equal(net(x2 if i else x, t, audio), tiny_unet(x2, t, audio))]
    assert full == [3, 6]  # step 0 saw x (not x2), so it matches only itself
    assert [net.is_full_step(i) for i in range(4)] == [True, False, False, True]


@torch.no_grad()
def test_cached_step_recomputes_only_the_outer_layers(tiny_unet) -> None:
    """Branch 0: a cached step's output depends on its own input only through conv_in and the last layer."""
    x, audio = inputs(seed=4)
    y, _ = inputs(seed=5)
    net = CachedUNet(tiny_unet, cache_interval=3, timesteps=[900, 800])
    net(x, 900, audio)
    cached_y = net(y, 800, audio)
    assert not torch.equal(cached_y, tiny_unet(y, 800, audio))  # not the plain result...
    assert not torch.equal(cached_y, tiny_unet(x, 800, audio))  # ...nor the stored input's: conv_in is fresh
    net.reset()
    net(x, 900, audio)
    assert not torch.equal(net(y, 800, audio * 2), cached_y)  # the last layer's attention sees new audio


@torch.no_grad()
def test_store_carries_across_windows_and_reset_forgets(tiny_unet) -> None:
    """Like the reference: one store per video, each window's step 0 is full and refreshes it."""
    x, audio = inputs(seed=6)
    x_short, audio_short = inputs(f=1, seed=7)
    net = CachedUNet(tiny_unet, cache_interval=2, timesteps=[900, 500])
    net(x, 900, audio)
    net(x, 500, audio)
    # The next window (fewer frames) starts over at index 0: a full step, so shapes follow the new window.
    assert torch.equal(net(x_short, 900, audio_short), tiny_unet(x_short, 900, audio_short))
    assert net(x_short, 500, audio_short).shape == (2, 4, 1, 8, 8)
    net.reset()
    net.set_timesteps([500, 900])  # after a reset the first index seen (here 1) becomes the start
    assert torch.equal(net(x, 900, audio), tiny_unet(x, 900, audio))
    assert net.is_full_step(1) and not net.is_full_step(0)


@torch.no_grad()
def test_store_keeps_only_what_a_cached_step_reads(tiny_unet) -> None:
    net = CachedUNet(tiny_unet, cache_interval=3, timesteps=[900])
    x, audio = inputs()
    net(x, 900, audio)
    # Branch 0: the four down blocks, the mid block, up blocks 3..1 (counted from the output side), and the
    # final up block's first two ResNets and transformers.
    assert sorted(net._store) == sorted(
        [("down", "block", i, 0) for i in range(4)] + [("mid", "mid_block", 0, 0)]
        + [("up", "block", i, 0) for i in (1, 2, 3)]
        + [("up", kind, 0, layer) for kind in ("resnet", "attentions") for layer in (1, 2)])


def test_arguments_are_checked(tiny_unet) -> None:
    with pytest.raises(ValueError, match="cache_interval must be an integer >= 1"):
        CachedUNet(tiny_unet, cache_interval=0)
    with pytest.raises(ValueError, match="cache_branch_id must be an integer from 0 to 11, got 12"):
        CachedUNet(tiny_unet, cache_branch_id=12)
    net = CachedUNet(tiny_unet)
    x, audio = inputs()
    with pytest.raises(ValueError, match="set_timesteps"):
        net(x, 900, audio)
    net.set_timesteps([900, 800])
    with pytest.raises(ValueError, match="timestep 5 is not one of"):
        net(x, 5, audio)
    with pytest.raises(ValueError, match="one timestep per call"):
        net(x, torch.tensor([900, 800]), audio)


@torch.no_grad()
def test_modules_run_on_a_cached_step(tiny_unet) -> None:
    """Branch 0, cached step: conv_in, the final up block's last layer, its second motion module (re-applied to
    the stored transformer output, as the reference's unwrapped motion modules are) and the head; nothing else."""
    ran: list[str] = []
    handles = [module.register_forward_hook(lambda m, i, o, name=name: ran.append(name))
               for name, module in tiny_unet.named_modules() if name.count(".") <= 3 and name]
    try:
        net = CachedUNet(tiny_unet, cache_interval=3, timesteps=[900, 800])
        x, audio = inputs()
        net(x, 900, audio)
        ran.clear()
        net(x, 800, audio)
    finally:
        for handle in handles:
            handle.remove()
    # Top-level modules and the layers inside blocks (block containers are walked, not called).
    layers = sorted({name for name in ran if name.count(".") in (0, 3) and not name.startswith("time_")})
    assert layers == ["conv_in", "conv_norm_out", "conv_out", "up_blocks.3.attentions.2",
                   "up_blocks.3.motion_modules.1", "up_blocks.3.motion_modules.2", "up_blocks.3.resnets.2"]
