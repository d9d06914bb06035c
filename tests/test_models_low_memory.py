"""SequentialGuidance: guidance halves one after the other equal the batched UNet call (plain and cached)."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from latentsync.models.deepcache import CachedUNet
from latentsync.models.low_memory import SequentialGuidance
from latentsync.inference.pipeline import DDIM_CONFIG

# Per-item calls differ from the batched call only by the float rounding of batch-shaped CPU kernels.
ROUNDING = 1e-5
GOLDEN_TOLERANCE = 1e-4  # the UNet golden's bar (tests/test_unet.py)


@pytest.fixture(scope="module")
def golden(tiny_unet_golden) -> dict[str, torch.Tensor]:
    return tiny_unet_golden  # (golden_unet, from conftest, is our UNet filled with its weights)


@torch.no_grad()
def test_halves_one_after_the_other_equal_the_batched_call(golden, golden_unet) -> None:
    sample, t, audio = golden["input.sample"], golden["input.timestep"], golden["input.encoder_hidden_states"]
    assert sample.shape[0] == 2  # the golden is a guidance batch: zero audio first
    batched = golden_unet(sample, t, audio)
    net = SequentialGuidance(golden_unet)
    seen: list[int] = []
    hook = golden_unet.conv_in.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    try:
        sequential = net(sample, t, audio)
        nested = net(sample, torch.tensor([500, 500]), audio.reshape(2, -1, *audio.shape[1:]))
    finally:
        hook.remove()
    assert seen == [1, 1, 1, 1]  # the UNet never sees both halves at once
    assert (sequential - batched).abs().max().item() <= ROUNDING
    assert (sequential - golden["output.sample"]).abs().max().item() <= GOLDEN_TOLERANCE
    assert torch.equal(nested, sequential)  # (b, f, tokens, d) audio and per-item timesteps split alike
    one = net(sample[:1], t, audio[: sample.shape[2]])
    assert torch.equal(one, golden_unet(sample[:1], t, audio[: sample.shape[2]]))  # one item: passed through
    face = (net.config, net.dtype, net.max_frames)
    assert face == (golden_unet.config, golden_unet.dtype, golden_unet.max_frames)


@torch.no_grad()
def guided_loop(net, unet_inputs: dict[str, torch.Tensor], steps: int, windows: int, guidance: float = 1.5
                ) -> torch.Tensor:  # fmt: skip
    """The pipeline's loop in short: per window a fresh scheduler, CFG with zero audio first."""
    outputs = []
    for w in range(windows):
        scheduler = DDIMScheduler.from_config(DDIM_CONFIG)
        scheduler.set_timesteps(steps)
        if hasattr(net, "set_timesteps"):
            net.set_timesteps(scheduler.timesteps)
        latents = unet_inputs["latents"][w]
        condition = torch.cat([unet_inputs["condition"][w]] * 2)
        audio = torch.cat([torch.zeros_like(unet_inputs["audio"][w]), unet_inputs["audio"][w]])
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            uncond, cond = net(torch.cat([model_input, condition], dim=1), t, audio).chunk(2)
            latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents).prev_sample
        outputs.append(latents)
    return torch.cat(outputs, dim=2)


@pytest.mark.slow  # 24 UNet calls: ~30-60 s on the shared 2-core machine
def test_cached_halves_keep_one_store_each_and_equal_the_batched_cached_loop(golden_unet) -> None:
    """Step caching with the halves apart: one CachedUNet per half gives the batched CachedUNet's latents."""
    gen = torch.Generator().manual_seed(7)
    windows, frames = 2, 2
    inputs = {
        "latents": [torch.randn(1, 4, frames, 16, 16, generator=gen) for _ in range(windows)],
        "condition": [torch.randn(1, 9, frames, 16, 16, generator=gen) for _ in range(windows)],
        "audio": [torch.randn(frames, 50, 24, generator=gen) for _ in range(windows)],
    }
    batched = guided_loop(CachedUNet(golden_unet, cache_interval=2), inputs, steps=3, windows=windows)
    halves = SequentialGuidance(*(CachedUNet(golden_unet, cache_interval=2) for _ in range(2)))
    sequential = guided_loop(halves, inputs, steps=3, windows=windows)
    assert (sequential - batched).abs().max().item() <= ROUNDING
    # guard: the step-1 cached call of each half reads its own store (a shared store would mix the halves)
    shared = CachedUNet(golden_unet, cache_interval=2)
    mixed = guided_loop(SequentialGuidance(shared, shared), inputs, steps=3, windows=windows)
    assert (mixed - batched).abs().max().item() > 100 * ROUNDING


def test_wrong_batches_are_refused(golden_unet) -> None:
    with pytest.raises(ValueError, match="at least one net"):
        SequentialGuidance()
    two = SequentialGuidance(golden_unet, golden_unet)
    sample = torch.zeros(3, 13, 2, 16, 16)
    with pytest.raises(ValueError, match="at most 2 batch items, got 3"):
        two(sample, 500, torch.zeros(6, 50, 24))
    with pytest.raises(ValueError, match="audio_embeds must have shape"):
        SequentialGuidance(golden_unet)(sample[:2], 500, torch.zeros(5, 50, 24))
    with pytest.raises(ValueError, match="timestep must be a scalar"):
        SequentialGuidance(golden_unet)(sample[:2], torch.tensor([1, 2, 3]), torch.zeros(4, 50, 24))
