"""The lip-sync pipeline: a face video and a speech clip in, the lip-synced MP4 out, streaming chunk by chunk.

It keeps the official numerical recipe (README of the reference, §4): per-frame Whisper windows; faces aligned to the
reference template; the lower face masked; ``[noisy 4 | mask 1 | masked 4 | reference 4]`` latents; DDIM with
classifier-free guidance against all-zero audio; one initial noise shared by every frame; 16 frames per UNet call;
paste-back. What changes is the shape: video is decoded, aligned, diffused, restored and encoded chunk by chunk, so
host memory does not grow with the video's length, and every file lives in a per-call temporary directory.

Two passes over the video: the first finds the face in every frame (landmarks are small), the second generates. When
the audio is longer than the video, the video is played forwards and backwards (ping-pong, the reference's loop) and
the first pass also writes a constant-25-fps copy that the second pass can read backwards exactly.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latentsync import media
from latentsync.audio_features import audio_windows
from latentsync.errors import InputError
from latentsync.faces import FaceTrack, FaceTracker, anchor_points, estimate_affines, latent_mask, mouth_mask
from latentsync.faces import paste_back, warp_faces
from latentsync.faces.detection import MIN_FACE_HEIGHT, MIN_FACE_WIDTH
from latentsync.sync import SyncScore
from latentsync.sync.mfcc import num_windows

FRAMES_PER_CALL = 16  # the UNet was trained on 16-frame windows; its ResNet GroupNorms span all frames of a call
DECODE_CHUNK = FRAMES_PER_CALL * 4  # frames per decoded chunk in the face-analysis pass
REVERSE_READ_BLOCK = FRAMES_PER_CALL * 4  # frames read per seek when playing the video backwards
INTERMEDIATE_CRF = 10  # near-lossless constant-25-fps copy used for ping-pong playback
LATENT_CHANNELS = 4
DEFAULT_STEPS, DEFAULT_GUIDANCE, DEFAULT_SEED = 20, 1.5, 1247  # the reference's inference.sh / gradio defaults
MAX_STEPS = 1000  # the scheduler's training steps: more inference steps than that are meaningless

# The reference's configs/scheduler_config.json as resolved by diffusers (README §4.8): timesteps 951, 901, ..., 1.
DDIM_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}

ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class LipSyncOptions:
    """The user's knobs; everything fixed by training lives in the model configs."""

    steps: int = DEFAULT_STEPS  # DDIM steps; more is slower and slightly sharper (20-50 is sensible)
    guidance_scale: float = DEFAULT_GUIDANCE  # classifier-free guidance on the audio; 1.0 disables it
    seed: int = DEFAULT_SEED  # the initial noise and the VAE samples come from a generator seeded with this
    score_sync: bool = False  # also measure Sync-C / Sync-D of the input and the output against the new audio

    def check(self) -> None:
        if not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise InputError(f"steps must be an integer from 1 to {MAX_STEPS}, got {self.steps!r}")
        if not (isinstance(self.guidance_scale, (int, float)) and 1.0 <= self.guidance_scale <= 20.0):
            raise InputError(f"guidance_scale must be a number from 1.0 to 20.0, got {self.guidance_scale!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise InputError(f"seed must be a non-negative integer below 2**63, got {self.seed!r}")


@dataclass(frozen=True)
class LipSyncResult:
    output: Path
    num_frames: int  # frames written, = ceil(audio seconds x 25)
    audio_seconds: float
    source_frames: int  # frames of the input video at 25 fps
    frames_with_face: int  # output frames that went through the model (the rest passed through untouched)
    looped: bool  # the video was played back and forth because the audio is longer
    seconds: float  # wall-clock time of the call
    sync_before: SyncScore | None = None  # the input video (as played) against the new audio, if asked for
    sync_after: SyncScore | None = None  # the output against the new audio, if asked for
    small_face_frames: int = 0  # output frames whose face is below the reference's 50x80 px minimum

    def summary(self) -> str:
        loop = ", video looped back and forth to match the audio" if self.looped else ""
        text = (
            f"{self.num_frames} frames ({self.num_frames / media.VIDEO_FPS:.2f} s at {media.VIDEO_FPS} fps) for "
            f"{self.audio_seconds:.2f} s of audio; {self.frames_with_face} frames lip-synced{loop}; "
            f"took {self.seconds:.1f} s"
        )
        if self.small_face_frames:
            text += (
                f"; the face is smaller than {MIN_FACE_WIDTH}x{MIN_FACE_HEIGHT} px in {self.small_face_frames} "
                "frames, so quality may be lower there (a larger face or a higher-resolution video helps)"
            )
        if self.sync_before and self.sync_after:
            text += (
                f"; Sync-C before {self.sync_before.confidence:.2f} -> after {self.sync_after.confidence:.2f}"
                f" (Sync-D {self.sync_before.min_distance:.2f} -> {self.sync_after.min_distance:.2f})"
            )
        return text


def probe_inputs(video: str | os.PathLike, audio: str | os.PathLike) -> media.MediaInfo:
    """Check with ffprobe alone (no decoding) that ``video`` has a picture and ``audio`` has sound; the video's info.

    Cheap enough to run before loading any model, so a wrong file is reported before anything slow happens.
    """
    info = media.check_video(media.probe(video))  # a picture that plays: not audio only, not a still, not empty
    if not media.probe(audio).has_audio:
        raise InputError(f"{Path(audio).name} has no audio track; please provide speech audio (or a video with sound).")
    return info


def pingpong_indices(num_source: int, num_out: int) -> np.ndarray:
    """Source frame for each output frame: forwards, backwards, forwards... (turning frames repeat, as upstream)."""
    period = np.concatenate([np.arange(num_source), np.arange(num_source)[::-1]])  # (2n,)
    return np.resize(period, num_out)


def _runs(indices: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """Split a source-index schedule into runs (first, length, step) with step in {1, -1, 0}."""
    i = 0
    while i < len(indices):
        step = int(np.clip(indices[i + 1] - indices[i], -1, 1)) if i + 1 < len(indices) else 1
        j = i + 1
        while j < len(indices) and indices[j] - indices[j - 1] == step:
            j += 1
        yield int(indices[i]), j - i, step
        i = j


def _frames_in_schedule(path: Path, indices: np.ndarray, info: media.MediaInfo,
                        size: tuple[int, int]) -> Iterator[np.ndarray]:  # fmt: skip
    """Yield the frames ``indices`` of a 25 fps video one by one, cropped to ``size`` = (height, width).

    The crop matters for the 25 fps copy: H.264 (yuv420p) needs even sizes, so :class:`media.VideoWriter` pads an
    odd-sized video by a row or column that the source does not have.
    """
    height, width = size
    for frame in _read_schedule(path, indices, info):
        yield frame[:height, :width]


def _read_schedule(path: Path, indices: np.ndarray, info: media.MediaInfo) -> Iterator[np.ndarray]:
    """The frames ``indices`` of a 25 fps video, as stored, reading backward runs block by block."""
    for first, length, step in _runs(indices):
        if step == 1:
            for chunk in media.iter_video_frames(path, DECODE_CHUNK, start=first, count=length, info=info):
                yield from chunk
        elif step == 0:
            frame = next(media.iter_video_frames(path, 1, start=first, count=1, info=info))[0]
            for _ in range(length):
                yield frame
        else:
            last = first - length + 1
            for block_end in range(first + 1, last, -REVERSE_READ_BLOCK):
                block_start = max(last, block_end - REVERSE_READ_BLOCK)
                block = np.concatenate(list(media.iter_video_frames(
                    path, REVERSE_READ_BLOCK, start=block_start, count=block_end - block_start, info=info)))
                yield from block[::-1]


def _batched(frames: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


class LipSyncPipeline:
    """Models, face backend and settings, loaded once; call it per request (it mutates nothing shared)."""

    def __init__(self, *, unet, audio_encoder, vae, face_backend, resolution: int, device: torch.device,
                 dtype: torch.dtype, version: str = "1.5", sync_scorer=None):  # fmt: skip
        if audio_encoder.feature_dim != unet.config.cross_attention_dim:
            raise ValueError(
                f"the Whisper encoder gives {audio_encoder.feature_dim}-d features but the UNet attends to "
                f"{unet.config.cross_attention_dim}-d audio"
            )
        self.unet, self.audio_encoder, self.vae, self.face_backend = unet, audio_encoder, vae, face_backend
        self.sync_scorer = sync_scorer  # optional SyncScorer for LipSyncOptions.score_sync
        self.resolution, self.device, self.dtype, self.version = resolution, torch.device(device), dtype, version
        self.pixel_mask = torch.from_numpy(mouth_mask(resolution)).to(self.device, dtype)  # (res, res), 1 = keep
        self.latent_mask = torch.from_numpy(latent_mask(resolution)).to(self.device, dtype)  # (res/8, res/8)

    # ------------------------------------------------------------------------------------------------ the call

    def __call__(self, video: str | Path, audio: str | Path, output: str | Path,
                 options: LipSyncOptions = LipSyncOptions(), progress: ProgressCallback | None = None
                 ) -> LipSyncResult:  # fmt: skip
        """Lip-sync ``video`` to ``audio`` and write ``output`` (an MP4, written atomically)."""
        started = time.perf_counter()
        progress = progress or (lambda stage, done, total: None)
        # 1. Check the inputs, and that the output can be written, before any heavy work.
        options.check()
        if options.score_sync and self.sync_scorer is None:
            raise ValueError("score_sync needs the SyncNet: load the pipeline with load_pipeline(..., sync_scores=True)")
        info = probe_inputs(video, audio)
        media.check_output_path(output, inputs=(video, audio), create_folders=True)
        waveform = media.load_audio(audio)
        num_frames = media.frames_for_duration(len(waveform) / media.SAMPLE_RATE)
        if options.score_sync and num_windows(num_frames, len(waveform)) < 1:
            raise InputError("Sync scores need at least 0.24 s of audio (six video frames); untick them for clips this short.")
        with tempfile.TemporaryDirectory(prefix="latentsync-") as workdir:
            # 2. Whisper features, evaluated lazily: the log-mel maximum of the whole clip now (the reference
            # normalises over the whole clip), the encoder one 30-s window at a time as the chunks need it, so
            # memory does not grow with the length of the audio.
            progress("audio features", 0, 1)
            features = self.audio_encoder.features(waveform)  # behaves as (L, 5, d)
            progress("audio features", 1, 1)
            # 3. Pass 1: find the face in every frame (and keep a 25 fps copy if the video will loop).
            # Only when the video looks shorter than the audio; an estimate off by a frame falls back to seeking.
            may_loop = info.frames_at_model_fps < num_frames
            copy_path = Path(workdir) / "frames25.mp4" if may_loop else None
            track = self._track_faces(Path(video), info, num_frames, copy_path, progress)
            # 4. Which source frame each output frame shows, and the alignment of every source frame.
            looped = track.num_frames < num_frames
            schedule = pingpong_indices(track.num_frames, num_frames) if looped else np.arange(num_frames)
            matrices = np.full((track.num_frames, 2, 3), np.nan, np.float32)
            matrices[track.valid] = estimate_affines(anchor_points(track.landmarks[track.valid]), self.resolution)
            # 5. Pass 2: generate and write, 16 frames at a time.
            # (If the container overstated the length, no copy was made: seek in the original, exact when it is
            # constant 25 fps and close otherwise.)
            use_copy = looped and copy_path is not None
            source = copy_path if use_copy else Path(video)
            source_info = media.probe(source) if use_copy else info
            size = (info.height, info.width)  # the copy may be a row/column larger (even sizes): crop it back
            frames = _batched(_frames_in_schedule(source, schedule, source_info, size), FRAMES_PER_CALL)
            generated = self._generate(frames, schedule, track.valid, matrices, features, options, progress)
            with media.VideoWriter(output, width=info.width, height=info.height, audio=audio,
                                   create_folders=True) as writer:  # fmt: skip
                for chunk in generated:
                    writer.write(chunk)
            # 6. Optionally, how well the mouth follows the new audio, before and after.
            before = after = None
            if options.score_sync:
                progress("sync scores", 0, 2)
                boxes = track.boxes[schedule]
                played = _batched(_frames_in_schedule(source, schedule, source_info, size), DECODE_CHUNK)
                before = self.sync_scorer.score(played, boxes, waveform)
                progress("sync scores", 1, 2)
                after = self.sync_scorer.score(media.iter_video_frames(output, DECODE_CHUNK), boxes, waveform)
                progress("sync scores", 2, 2)
            progress("done", 1, 1)
        return LipSyncResult(
            output=Path(output),
            num_frames=num_frames,
            audio_seconds=len(waveform) / media.SAMPLE_RATE,
            source_frames=track.num_frames,
            frames_with_face=int(track.valid[schedule].sum()),
            looped=looped,
            seconds=time.perf_counter() - started,
            sync_before=before,
            sync_after=after,
            small_face_frames=int((track.valid & track.small)[schedule].sum()),
        )

    # ------------------------------------------------------------------------------------------------ steps

    def _track_faces(self, video: Path, info: media.MediaInfo, num_frames: int, copy_path: Path | None,
                     progress: ProgressCallback) -> FaceTrack:  # fmt: skip
        """Landmarks of the first ``num_frames`` frames (all of them if the video is shorter)."""
        tracker = FaceTracker(self.face_backend, small_faces=True)  # small faces: processed, flagged in the summary
        total = max(min(info.frames_at_model_fps, num_frames), 1)
        done = 0
        copy = media.VideoWriter(copy_path, width=info.width, height=info.height, crf=INTERMEDIATE_CRF) if copy_path else None
        try:
            for chunk in media.iter_video_frames(video, DECODE_CHUNK, count=num_frames, info=info):
                tracker.update(chunk)
                if copy:
                    copy.write(chunk)
                done += len(chunk)
                progress("analysing faces", min(done, total), total)
        except BaseException:
            if copy:
                copy.abort()
            raise
        if copy:
            copy.close()
        return tracker.finish()

    def _generate(self, batches: Iterator[np.ndarray], schedule: np.ndarray, valid: np.ndarray,
                  matrices: np.ndarray, features: torch.Tensor, options: LipSyncOptions,
                  progress: ProgressCallback) -> Iterator[np.ndarray]:  # fmt: skip
        generator = torch.Generator("cpu").manual_seed(options.seed)
        size = self.resolution // 8
        # One noise draw shared by every frame of the video (the reference's inference recipe).
        noise = torch.randn((1, LATENT_CHANNELS, 1, size, size), generator=generator, dtype=torch.float32)
        noise = noise.to(self.device, self.dtype)
        total = math.ceil(len(schedule) / FRAMES_PER_CALL)
        start = 0
        for k, frames in enumerate(batches):
            progress("lip sync", k, total)
            sources = schedule[start : start + len(frames)]
            keep = valid[sources]  # frames without a usable face pass through untouched
            out = frames.copy()
            if keep.any():
                audio = audio_windows(features, start, len(frames))[torch.from_numpy(keep).to(features.device)]
                faces = self._lipsync_faces(frames[keep], matrices[sources[keep]], audio, noise, generator, options)
                out[keep] = paste_back(frames[keep], faces, matrices[sources[keep]])
            start += len(frames)
            yield out
        progress("lip sync", total, total)

    @torch.inference_mode()
    def _lipsync_faces(self, frames: np.ndarray, matrices: np.ndarray, audio: torch.Tensor, noise: torch.Tensor,
                       generator: torch.Generator, options: LipSyncOptions) -> torch.Tensor:  # fmt: skip
        """Aligned faces of ``frames`` with the mouth re-generated: (n, 3, res, res) float, nominally in [-1, 1]
        (not clamped: see the end)."""
        from diffusers import DDIMScheduler

        n = len(frames)
        faces = torch.from_numpy(warp_faces(frames, matrices, self.resolution)).to(self.device)  # (n, res, res, 3)
        pixels = faces.permute(0, 3, 1, 2).to(self.dtype) / 127.5 - 1.0  # (n, 3, res, res) in [-1, 1]
        masked = self.vae.encode(pixels * self.pixel_mask, generator)  # (n, 4, h, w)
        reference = self.vae.encode(pixels, generator)  # (n, 4, h, w): the frame's own face
        to_video = lambda x: x.permute(1, 0, 2, 3).unsqueeze(0)  # (n, c, h, w) -> (1, c, n, h, w)  # noqa: E731
        mask = self.latent_mask.expand(1, 1, n, *self.latent_mask.shape)  # (1, 1, n, h, w)
        condition = torch.cat([mask, to_video(masked), to_video(reference)], dim=1)  # (1, 9, n, h, w)
        audio = audio.to(self.device, self.dtype)  # (n, 50, d)
        guided = options.guidance_scale > 1.0
        if guided:  # unconditional first, batch-major, as the reference
            condition = torch.cat([condition, condition])
            audio = torch.cat([torch.zeros_like(audio), audio])

        scheduler = DDIMScheduler.from_config(DDIM_CONFIG)  # per call: nothing shared is mutated
        scheduler.set_timesteps(options.steps, device=self.device)
        latents = noise.expand(1, LATENT_CHANNELS, n, *noise.shape[-2:]) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = torch.cat([scheduler.scale_model_input(model_input, t), condition], dim=1)
            eps = self.unet(model_input, t, audio)  # (b, 4, n, h, w)
            if guided:
                uncond, cond = eps.chunk(2)
                eps = uncond + options.guidance_scale * (cond - uncond)
            latents = scheduler.step(eps, t, latents).prev_sample

        decoded = self.vae.decode(latents[0].permute(1, 0, 2, 3))  # (n, 3, res, res)
        keep = self.pixel_mask  # known pixels come back exactly from the input face
        # Not clamped here: the reference resizes the face to the crop size first and clamps after the inverse
        # warp (README §4.10), which paste_back does; clamping first moves pixels where the VAE overshoots.
        return (decoded * (1 - keep) + pixels * keep).float()
