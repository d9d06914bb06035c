"""The training losses' maths on constructed tensors (training/README §1.3, §4.3)."""

from __future__ import annotations

import math

import torch

from latentsync.training import losses


def alphas():
    from diffusers import DDIMScheduler

    from latentsync.inference.pipeline import DDIM_CONFIG

    return DDIMScheduler.from_config(DDIM_CONFIG).alphas_cumprod


def test_mixed_noise_has_unit_variance_and_half_correlated_frames():
    generators = [torch.Generator().manual_seed(i) for i in range(4)]
    noise = losses.mixed_noise((4, 4, 16, 32, 32), 1.0, generators)
    assert abs(noise.var().item() - 1.0) < 0.02
    corr = (noise[:, :, 0] * noise[:, :, 5]).mean().item()  # E[x_0 x_5] = alpha^2 / (1 + alpha^2) = 0.5
    assert abs(corr - 0.5) < 0.03
    again = losses.mixed_noise((4, 4, 16, 32, 32), 1.0, [torch.Generator().manual_seed(i) for i in range(4)])
    assert torch.equal(noise, again)
    shared = losses.shared_noise((1, 4, 16, 8, 8), [torch.Generator().manual_seed(0)])
    assert torch.equal(shared[:, :, 0], shared[:, :, 15])


def test_one_step_x0_inverts_add_noise_and_matches_diffusers():
    from diffusers import DDIMScheduler

    from latentsync.inference.pipeline import DDIM_CONFIG

    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 16, 4, 4, generator=generator)
    eps = torch.randn(2, 4, 16, 4, 4, generator=generator)
    t = torch.tensor([3, 870])
    noisy = losses.add_noise(x0, eps, t, alphas())
    reference = DDIMScheduler.from_config(DDIM_CONFIG).add_noise(x0, eps, t)
    torch.testing.assert_close(noisy, reference)
    torch.testing.assert_close(losses.one_step_x0(noisy, eps, t, alphas()), x0, atol=1e-4, rtol=1e-4)
    timesteps = losses.sample_timesteps([torch.Generator().manual_seed(i) for i in range(200)])
    assert timesteps.min() >= 0 and timesteps.max() < losses.NUM_TRAIN_TIMESTEPS and len(timesteps.unique()) > 150


def test_sync_losses_are_bce_of_the_cosine():
    v = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    a = torch.tensor([[0.6, 0.8], [0.6, 0.8]])
    cos = torch.tensor([0.6, 1.0])
    assert torch.allclose(losses.sync_loss(v, a), -torch.log(cos).mean())
    bce = losses.cosine_bce(v, a, torch.tensor([[0.0], [1.0]]))
    assert math.isclose(bce[0].item(), -math.log(0.4), rel_tol=1e-6) and bce[1].item() == 0.0
    assert losses.cosine_bce(v, a, torch.tensor([[1.0], [0.0]]))[1].item() == 100.0  # torch's log clamp
    assert losses.sync_accuracy(v, a, torch.tensor([[1.0], [1.0]])).item() == 1.0


def test_syncnet_frames_stack_frames_on_channels_and_keep_the_lower_half():
    frames = torch.arange(2 * 16).float().view(32, 1, 1, 1).expand(32, 3, 8, 8).clone()
    frames[:, 1] += 0.5  # green channel marks
    stacked = losses.syncnet_frames(frames, batch=2, resolution=8)
    assert stacked.shape == (2, 48, 4, 8)
    assert stacked[1, 3 * 5 + 1, 0, 0].item() == 16 + 5 + 0.5  # item 1, frame 5, green
    assert losses.syncnet_frames(torch.zeros(16, 3, 16, 16), 1, 8).shape == (1, 48, 4, 8)  # resized


def test_reconstruction_and_total():
    a, b = torch.zeros(2, 4, 3, 2, 2), torch.ones(2, 4, 3, 2, 2)
    assert losses.epsilon_mse(a.half(), b).dtype == torch.float32 and losses.epsilon_mse(a, b).item() == 1.0
    terms = {"recon": torch.tensor(1.0), "sync": torch.tensor(2.0)}
    assert abs(losses.total_loss(terms, {"recon": 1.0, "sync": 0.05, "lpips": 0.1}).item() - 1.1) < 1e-6
