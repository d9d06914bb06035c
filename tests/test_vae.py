"""SD VAE wrapper: shapes, scaling, chunk-invariant sampling, diffusers save/load, fp32 and bf16 on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from latentsync.errors import CheckpointError
from latentsync.models.vae import (
    VAE_SCALING_FACTOR,
    LatentVae,
    save_random_tiny_vae,
    tiny_vae_config,
)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    return save_random_tiny_vae(tmp_path_factory.mktemp("vae") / "tiny_vae", seed=0)


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return (
        torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    )  # (n, 3, H, W) in [-1, 1]


def test_round_trip_shapes(vae_dir, pixels):
    vae = LatentVae.from_pretrained(vae_dir, batch_size=2)
    latents = vae.encode(pixels, generator=torch.Generator().manual_seed(0))
    assert latents.shape == (5, 4, 8, 8) and latents.dtype == torch.float32
    decoded = vae.decode(latents)
    assert decoded.shape == (5, 3, 64, 64) and decoded.dtype == torch.float32
    assert torch.isfinite(decoded).all()


def test_encode_is_scaled_posterior_sample(vae_dir, pixels):
    vae = LatentVae.from_pretrained(vae_dir, batch_size=8)
    latents = vae.encode(pixels, generator=torch.Generator().manual_seed(4))
    posterior = vae.model.encode(pixels).latent_dist
    noise = torch.cat([torch.randn(1, 4, 8, 8, generator=g) for g in [torch.Generator().manual_seed(4)] * 5])
    torch.testing.assert_close(latents, (posterior.mean + posterior.std * noise) * VAE_SCALING_FACTOR)
    assert not torch.allclose(
        latents, posterior.mean * VAE_SCALING_FACTOR, atol=1e-3
    )  # sampled, not the mode


def test_decode_unscales_before_the_decoder(vae_dir):
    vae = LatentVae.from_pretrained(vae_dir)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    expected = vae.model.decode(latents / VAE_SCALING_FACTOR).sample
    torch.testing.assert_close(vae.decode(latents), expected)


def test_batch_size_does_not_change_results(vae_dir):
    # 40×40 pixels → 5×5 latents: 100 noise values per frame, not a multiple of 16, so CPU torch.randn
    # would give different numbers for one (5, 4, 5, 5) draw than for (2, …), (2, …), (1, …) draws.
    pixels = torch.rand(5, 3, 40, 40, generator=torch.Generator().manual_seed(2)) * 2 - 1
    whole = LatentVae.from_pretrained(vae_dir, batch_size=5)
    latents_whole = whole.encode(pixels, generator=torch.Generator().manual_seed(3))
    decoded_whole = whole.decode(latents_whole)
    for batch_size in (1, 2, 3):
        chunked = LatentVae.from_pretrained(vae_dir, batch_size=batch_size)
        latents_chunked = chunked.encode(pixels, generator=torch.Generator().manual_seed(3))
        # Same noise, same per-frame maths; only float rounding differs (CPU conv kernels depend on the batch
        # shape: measured ≤ 5e-7 on latents of magnitude ~1, ≤ 7e-6 on decoded pixels).
        torch.testing.assert_close(latents_chunked, latents_whole, atol=1e-5, rtol=0)
        torch.testing.assert_close(chunked.decode(latents_whole), decoded_whole, atol=1e-5, rtol=0)
    # The generator drives the noise: another seed gives other latents, the same seed the same ones.
    other = whole.encode(pixels, generator=torch.Generator().manual_seed(4))
    assert (other - latents_whole).abs().max() > 1e-3
    assert torch.equal(whole.encode(pixels, generator=torch.Generator().manual_seed(3)), latents_whole)


@pytest.mark.parametrize(
    ("batch_size", "chunks"), [(1, [1] * 5), (2, [2, 2, 1]), (3, [3, 2]), (5, [5]), (8, [5])]
)
def test_autoencoder_never_sees_more_than_batch_size_frames(vae_dir, batch_size, chunks):
    """Forward hooks on the real AutoencoderKL's encoder and decoder record the frames of every call."""
    vae = LatentVae.from_pretrained(vae_dir, batch_size=batch_size)
    seen: dict[str, list[int]] = {"encoder": [], "decoder": []}
    hooks = [
        getattr(vae.model, part).register_forward_hook(
            lambda module, args, output, part=part: seen[part].append(args[0].shape[0])
        )
        for part in seen
    ]
    try:
        pixels = torch.rand(5, 3, 40, 40, generator=torch.Generator().manual_seed(2)) * 2 - 1
        latents = vae.encode(pixels, generator=torch.Generator().manual_seed(3))
        decoded = vae.decode(latents)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {"encoder": chunks, "decoder": chunks}  # consecutive chunks of at most batch_size frames
    assert latents.shape == (5, 4, 5, 5) and decoded.shape == (5, 3, 40, 40)


def test_posterior_noise_is_bit_identical_for_every_batch_size(tmp_path):
    """What chunking guarantees exactly: frame k gets the generator's k-th (1, 4, h, w) draw, any batch size.

    With quant_conv zeroed the posterior is N(0, 1) (mean 0, logvar 0, std exp(0) = 1) for every frame, so
    the latents are exactly noise * scale and can be compared bit for bit. (The network outputs themselves
    are only equal up to float rounding across batch sizes: batched CPU conv kernels sum in another order;
    see test_batch_size_does_not_change_results.)
    """
    model = AutoencoderKL(**tiny_vae_config())
    with torch.no_grad():
        model.quant_conv.weight.zero_()
        model.quant_conv.bias.zero_()
    pixels = torch.rand(5, 3, 40, 40, generator=torch.Generator().manual_seed(2)) * 2 - 1
    expected_gen = torch.Generator().manual_seed(9)
    draws = [torch.randn(1, 4, 5, 5, generator=expected_gen) for _ in range(5)]  # one per frame, in order
    expected = torch.cat(draws) * VAE_SCALING_FACTOR
    for batch_size in (1, 2, 3, 5, 8):
        generator = torch.Generator().manual_seed(9)
        latents = LatentVae(model, batch_size=batch_size).encode(pixels, generator)
        assert torch.equal(latents, expected), batch_size
        assert torch.equal(generator.get_state(), expected_gen.get_state())  # advanced by exactly 5 draws


def test_repeated_calls_are_bit_identical(vae_dir, pixels):
    """Decode is deterministic, and so is encode for one generator seed (same batch size, same machine)."""
    vae = LatentVae.from_pretrained(vae_dir, batch_size=2)
    latents = vae.encode(pixels, generator=torch.Generator().manual_seed(6))
    assert torch.equal(vae.encode(pixels, generator=torch.Generator().manual_seed(6)), latents)
    assert torch.equal(vae.decode(latents), vae.decode(latents))


def test_generator_state_advances_one_draw_per_frame(vae_dir):
    """Encoding frames 0-2 then 3-4 with one generator equals encoding all five at once."""
    pixels = torch.rand(5, 3, 40, 40, generator=torch.Generator().manual_seed(2)) * 2 - 1
    vae = LatentVae.from_pretrained(vae_dir, batch_size=4)
    generator = torch.Generator().manual_seed(7)
    in_two_calls = torch.cat([vae.encode(pixels[:3], generator), vae.encode(pixels[3:], generator)])
    at_once = vae.encode(pixels, torch.Generator().manual_seed(7))
    torch.testing.assert_close(in_two_calls, at_once, atol=1e-5, rtol=0)


def test_diffusers_format_save_load_round_trip(vae_dir, tmp_path):
    config = json.loads((vae_dir / "config.json").read_text())
    assert config["_class_name"] == "AutoencoderKL"
    assert config["block_out_channels"] == tiny_vae_config()["block_out_channels"]
    assert (vae_dir / "diffusion_pytorch_model.safetensors").is_file()
    loaded = LatentVae.from_pretrained(vae_dir).model
    loaded.save_pretrained(tmp_path / "again")
    reloaded = AutoencoderKL.from_pretrained(tmp_path / "again")
    original, copy = loaded.state_dict(), reloaded.state_dict()
    assert original.keys() == copy.keys()
    assert all(torch.equal(original[k], copy[k]) for k in original)
    # Same seed → same weights; another seed → other weights.
    same = AutoencoderKL.from_pretrained(save_random_tiny_vae(tmp_path / "same", seed=0)).state_dict()
    other = AutoencoderKL.from_pretrained(save_random_tiny_vae(tmp_path / "other", seed=1)).state_dict()
    key = "encoder.conv_in.weight"
    assert torch.equal(same[key], original[key]) and not torch.equal(other[key], original[key])


def test_bfloat16_on_cpu_tracks_float32(vae_dir, pixels):
    fp32 = LatentVae.from_pretrained(vae_dir, dtype=torch.float32)
    bf16 = LatentVae.from_pretrained(vae_dir, dtype=torch.bfloat16, batch_size=2)
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    latents = bf16.encode(pixels, generator=torch.Generator().manual_seed(0))
    assert latents.dtype == torch.bfloat16 and latents.shape == (5, 4, 8, 8)
    reference = fp32.encode(pixels, generator=torch.Generator().manual_seed(0))
    assert (latents.float() - reference).abs().max() < 0.05 * reference.abs().max()
    decoded = bf16.decode(reference)
    assert decoded.dtype == torch.bfloat16 and decoded.shape == (5, 3, 64, 64)
    reference_pixels = fp32.decode(reference)
    assert (decoded.float() - reference_pixels).abs().max() < 0.05 * reference_pixels.abs().max()


def test_output_device_and_input_dtype(vae_dir, pixels):
    vae = LatentVae.from_pretrained(vae_dir, batch_size=3)
    latents = vae.encode(pixels.double(), generator=torch.Generator().manual_seed(0), out_device="cpu")
    assert latents.device.type == "cpu" and latents.dtype == torch.float32


def test_rejects_bad_shapes_and_wrong_vae(vae_dir, pixels, tmp_path):
    vae = LatentVae.from_pretrained(vae_dir)
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"\(n, 3, h, w\)"):
        vae.encode(pixels[0], generator)
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(pixels[:, :, :60], generator)
    with pytest.raises(ValueError, match="no frames"):
        vae.decode(torch.zeros(0, 4, 8, 8))
    with pytest.raises(CheckpointError, match="latent channels"):
        LatentVae(AutoencoderKL(**dict(tiny_vae_config(), latent_channels=16)))
    with pytest.raises(CheckpointError, match="cannot load the VAE"):
        LatentVae.from_pretrained(tmp_path / "absent")


def test_channels_last_inputs_give_bit_identical_results(vae_dir):
    """A permuted (n, h, w, c) batch is handed to the autoencoder contiguous, as the reference's tensors are."""
    vae = LatentVae.from_pretrained(vae_dir, batch_size=4)
    pixels_hwc = torch.rand(5, 64, 64, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    pixels = pixels_hwc.permute(0, 3, 1, 2)  # (n, 3, H, W) view, not contiguous
    assert not pixels.is_contiguous()
    encoded = vae.encode(pixels, generator=torch.Generator().manual_seed(0))
    expected = vae.encode(pixels.contiguous(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(encoded, expected)
    latents = torch.randn(5, 8, 8, 4, generator=torch.Generator().manual_seed(2)).permute(0, 3, 1, 2)
    assert torch.equal(vae.decode(latents), vae.decode(latents.contiguous()))


def test_per_call_batch_size_slices_and_keeps_results(vae_dir):
    """The low-memory mode's slices: ``batch_size=`` per call bounds the frames per network call and leaves
    the latents (same noise draws) and the decoded pixels equal to the default chunking."""
    from latentsync.models.vae import LOW_MEMORY_VAE_BATCH_SIZE

    vae = LatentVae.from_pretrained(vae_dir, batch_size=5)
    pixels = torch.rand(5, 3, 40, 40, generator=torch.Generator().manual_seed(2)) * 2 - 1
    whole = vae.encode(pixels, generator=torch.Generator().manual_seed(3))
    decoded = vae.decode(whole)
    seen: list[int] = []
    hook = vae.model.decoder.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[0]))
    try:
        sliced = vae.encode(pixels, torch.Generator().manual_seed(3), batch_size=LOW_MEMORY_VAE_BATCH_SIZE)
        decoded_sliced = vae.decode(whole, batch_size=LOW_MEMORY_VAE_BATCH_SIZE)
    finally:
        hook.remove()
    assert seen == [1] * 5 and vae.batch_size == 5  # the per-call size does not stick
    torch.testing.assert_close(sliced, whole, atol=1e-5, rtol=0)  # float rounding of batch-shaped kernels only
    torch.testing.assert_close(decoded_sliced, decoded, atol=1e-5, rtol=0)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            vae.decode(whole, batch_size=bad)
