"""What the generation pass feeds the UNet and makes of its output, pinned with the REAL tiny UNet (README §4.6-4.9).

A forward hook on the loaded UNet records every call (its 13-channel input, timestep, audio tokens and noise
prediction); the tests recompute each piece independently from the recipe: the channel layout
``[noisy 4 | latent mask 1 | masked face 4 | reference face 4]``, one initial noise for every frame, classifier-free
guidance with the all-zero-audio half first and ``uncond + g * (cond - uncond)``, a single batch at guidance 1.0,
and frames without a face passed through byte for byte.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentsync import media
from latentsync.inference.audio_features import audio_windows
from latentsync.faces import FaceTracker, anchor_points, estimate_affines, latent_mask, mouth_mask, paste_back
from latentsync.faces import warp_faces
from latentsync.inference.pipeline import _paste_window
from latentsync.inference.pipeline import DDIM_CONFIG, LATENT_CHANNELS, LipSyncOptions

from .conftest import DEMO_AUDIO, DEMO_VIDEO

FRAMES, CHUNK = 8, 4  # two UNet calls of 4 frames per step: quick, and enough to see what is shared across chunks
SEED = 11
GUIDANCE = 2.0  # far from 1 so that a wrong combination of the two halves shows


def track_faces(pipeline, frames: np.ndarray):
    tracker = FaceTracker(pipeline.face_backend)
    tracker.update(frames)
    track = tracker.finish()
    matrices = np.full((len(frames), 2, 3), np.nan, np.float32)
    matrices[track.valid] = estimate_affines(anchor_points(track.landmarks[track.valid]), pipeline.resolution)
    return track.valid, matrices


@pytest.fixture(scope="module")
def clip(tiny_pipeline):
    """Eight demo frames with their alignment, and the demo speech's Whisper features."""
    frames = media.read_video_frames(DEMO_VIDEO, max_frames=FRAMES)
    valid, matrices = track_faces(tiny_pipeline, frames)
    assert valid.all()
    features = tiny_pipeline.audio_encoder.encode(media.load_audio(DEMO_AUDIO))
    return frames, valid, matrices, features


def generate_recorded(pipeline, frames, valid, matrices, features, options, chunk_sizes):
    """Run the pipeline's generation pass on ``frames`` in chunks of ``chunk_sizes``; (output frames, UNet calls)."""
    calls = []

    def record(module, args, kwargs, output):
        sample, timestep = args[0], args[1]
        audio = args[2] if len(args) > 2 else kwargs["audio_embeds"]
        calls.append({"sample": sample.clone(), "t": int(timestep), "audio": audio.clone(), "eps": output.clone()})

    bounds = np.cumsum([0, *chunk_sizes])
    assert bounds[-1] == len(frames)
    batches = (frames[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
    handle = pipeline.unet.register_forward_hook(record, with_kwargs=True)
    try:
        schedule = np.arange(len(frames))
        windows = pipeline._generate(batches, schedule, valid, matrices, features, options, lambda *a: None)
        out = [_paste_window(window) for window in windows]
    finally:
        handle.remove()
    assert [len(chunk) for chunk in out] == list(chunk_sizes)
    return np.concatenate(out), calls


@pytest.fixture(scope="module")
def plain_run(tiny_pipeline, clip):
    """One DDIM step without guidance."""
    frames, valid, matrices, features = clip
    options = LipSyncOptions(steps=1, guidance_scale=1.0, seed=SEED, cache_interval=1)
    return generate_recorded(tiny_pipeline, frames, valid, matrices, features, options, [CHUNK, CHUNK])


@pytest.fixture(scope="module")
def guided_run(tiny_pipeline, clip):
    """Two DDIM steps with guidance: the second step's input shows how the first step combined the two halves."""
    frames, valid, matrices, features = clip
    options = LipSyncOptions(steps=2, guidance_scale=GUIDANCE, seed=SEED, cache_interval=1)
    return generate_recorded(tiny_pipeline, frames, valid, matrices, features, options, [CHUNK, CHUNK])


def video_to_frames(x: torch.Tensor) -> torch.Tensor:
    """(c, n, h, w) -> (n, c, h, w)"""
    return x.permute(1, 0, 2, 3)


def aligned_pixels(pipeline, frames, matrices) -> torch.Tensor:
    faces = torch.from_numpy(warp_faces(frames, matrices, pipeline.resolution))  # (n, res, res, 3) uint8
    return faces.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (n, 3, res, res) in [-1, 1]


def scheduler(steps: int):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(DDIM_CONFIG)
    sched.set_timesteps(steps)
    return sched


# ------------------------------------------------------------------------------------------------ the UNet input


def test_unet_input_is_noise_mask_masked_face_then_reference_face(tiny_pipeline, clip, plain_run):
    frames, _, matrices, _ = clip
    _, calls = plain_run
    assert len(calls) == 2  # one step, two chunks
    # The seeded generator's draws in the recipe's order: the shared noise, then per chunk masked then reference.
    generator = torch.Generator("cpu").manual_seed(SEED)
    size = tiny_pipeline.resolution // 8
    torch.randn((1, LATENT_CHANNELS, 1, size, size), generator=generator)
    keep = torch.from_numpy(mouth_mask(tiny_pipeline.resolution)).float()  # (res, res), 1 = keep
    expected_mask = torch.from_numpy(latent_mask(tiny_pipeline.resolution)).float()  # (h, w)
    assert 0 < expected_mask.mean() < 1
    for k, call in enumerate(calls):
        sample = call["sample"]
        assert sample.shape == (1, 13, CHUNK, size, size)
        chunk = slice(k * CHUNK, (k + 1) * CHUNK)
        pixels = aligned_pixels(tiny_pipeline, frames[chunk], matrices[chunk])
        masked = tiny_pipeline.vae.encode(pixels * keep, generator)  # (n, 4, h, w)
        reference = tiny_pipeline.vae.encode(pixels, generator)
        for f in range(CHUNK):
            torch.testing.assert_close(sample[0, 4, f], expected_mask, rtol=0, atol=0)
        torch.testing.assert_close(video_to_frames(sample[0, 5:9]), masked, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(video_to_frames(sample[0, 9:13]), reference, rtol=1e-5, atol=1e-5)
        # The two face latents are different pictures: the masked one has the mouth blanked out.
        assert (sample[0, 5:9] - sample[0, 9:13]).abs().mean() > 0.05


def test_initial_noise_is_one_draw_shared_by_every_frame(tiny_pipeline, plain_run, guided_run):
    size = tiny_pipeline.resolution // 8
    draw = torch.randn((1, LATENT_CHANNELS, 1, size, size), generator=torch.Generator("cpu").manual_seed(SEED))
    expected = draw[0, :, 0] * scheduler(1).init_noise_sigma  # (4, h, w)
    for calls, steps in ((plain_run[1], 1), (guided_run[1], 2)):
        first_steps = calls[::steps]  # the first step of each chunk
        assert len(first_steps) == 2
        for call in first_steps:
            for b in range(call["sample"].shape[0]):
                for f in range(CHUNK):  # every frame of every chunk starts from the same noise
                    torch.testing.assert_close(call["sample"][b, :4, f], expected, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ guidance


def test_guidance_one_runs_one_conditional_batch(clip, plain_run):
    features = clip[3]
    _, calls = plain_run
    for k, call in enumerate(calls):
        assert call["sample"].shape[0] == 1 and call["eps"].shape[0] == 1
        expected = audio_windows(features, k * CHUNK, CHUNK)  # (n, 50, d)
        torch.testing.assert_close(call["audio"], expected, rtol=0, atol=0)
        assert call["audio"].abs().amax() > 0


def test_guided_batch_is_zero_audio_first_then_the_audio(clip, guided_run):
    features = clip[3]
    _, calls = guided_run
    assert len(calls) == 4 and [c["t"] for c in calls] == [501, 1, 501, 1]
    for k, call in enumerate(calls):
        start = (k // 2) * CHUNK
        sample, audio = call["sample"], call["audio"]
        assert sample.shape[0] == 2
        torch.testing.assert_close(sample[0], sample[1], rtol=0, atol=0)  # same latents and conditions
        assert audio.shape[0] == 2 * CHUNK  # (b f) batch-major: the unconditional frames first
        assert torch.count_nonzero(audio[:CHUNK]) == 0
        torch.testing.assert_close(audio[CHUNK:], audio_windows(features, start, CHUNK), rtol=0, atol=0)


def test_guided_noise_is_uncond_plus_scale_times_the_difference(tiny_pipeline, clip, guided_run):
    frames, _, matrices, _ = clip
    out, calls = guided_run
    sched = scheduler(2)
    keep = torch.from_numpy(mouth_mask(tiny_pipeline.resolution)).float()
    for k in range(2):
        first, second = calls[2 * k], calls[2 * k + 1]
        uncond, cond = first["eps"].chunk(2)
        assert (cond - uncond).abs().amax() > 1e-3  # the audio matters, so a wrong formula would show
        latents = first["sample"][:1, :4]
        guided = uncond + GUIDANCE * (cond - uncond)
        expected = sched.step(guided, first["t"], latents).prev_sample
        torch.testing.assert_close(second["sample"][:1, :4], expected, rtol=1e-4, atol=1e-5)
        inverted = cond + GUIDANCE * (uncond - cond)
        assert (sched.step(inverted, first["t"], latents).prev_sample - expected).abs().amax() > 1e-3
        # The last step the same way, then decode, keep the known pixels, paste back: the chunk's output frames.
        uncond, cond = second["eps"].chunk(2)
        final = sched.step(uncond + GUIDANCE * (cond - uncond), second["t"], second["sample"][:1, :4]).prev_sample
        chunk = slice(k * CHUNK, (k + 1) * CHUNK)
        pixels = aligned_pixels(tiny_pipeline, frames[chunk], matrices[chunk])
        decoded = tiny_pipeline.vae.decode(video_to_frames(final[0]))
        faces = decoded * (1 - keep) + pixels * keep  # not clamped: the reference resizes first (§4.10)
        assert faces.abs().amax() > 1.05  # the tiny VAE overshoots, so the clamping order shows
        pasted = paste_back(frames[chunk], faces, matrices[chunk]).astype(np.int16)
        assert np.abs(pasted - out[chunk]).max() <= 1
        # Clamping before the bicubic resize (to the crop size) would give other pixels.
        clamped_first = paste_back(frames[chunk], faces.clamp(-1, 1), matrices[chunk]).astype(np.int16)
        assert np.abs(clamped_first - out[chunk]).max() > 5


# ------------------------------------------------------------------------------------------------ no face


def test_frames_without_a_face_come_out_byte_identical(tiny_pipeline, clip):
    features = clip[3]
    frames = media.read_video_frames(DEMO_VIDEO, max_frames=16).copy()
    rng = np.random.default_rng(0)
    frames[5:13] = rng.integers(0, 256, frames[5:13].shape, dtype=np.uint8)  # 8 > 5 frames: too long to bridge
    valid, matrices = track_faces(tiny_pipeline, frames)
    assert valid.tolist() == [True] * 5 + [False] * 8 + [True] * 3
    # Chunks: with and without faces, none at all, and a face-less frame before faces.
    out, calls = generate_recorded(tiny_pipeline, frames, valid, matrices, features,
                                   LipSyncOptions(steps=1, guidance_scale=1.0, cache_interval=1), [6, 6, 4])  # fmt: skip
    assert [c["sample"].shape[2] for c in calls] == [5, 3]  # only the frames with a face reach the UNet
    assert out.dtype == np.uint8 and out.shape == frames.shape
    assert np.array_equal(out[~valid], frames[~valid])
    changed = np.abs(out[valid].astype(np.int16) - frames[valid]).max(axis=(1, 2, 3))
    assert (changed > 50).all()  # the frames with a face did go through the model
