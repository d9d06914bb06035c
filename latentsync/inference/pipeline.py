"""The lip-sync pipeline: a face video and a speech clip in, the lip-synced MP4 out, streaming chunk by chunk.

It keeps the official numerical recipe (README of the reference, §4): per-frame Whisper windows; faces aligned to the
reference template; the lower face masked; ``[noisy 4 | mask 1 | masked 4 | reference 4]`` latents; DDIM with
classifier-free guidance against all-zero audio; one initial noise shared by every frame; 16 frames per UNet call;
paste-back. What changes is the shape: video is decoded, aligned, diffused, restored and encoded chunk by chunk, so
host memory does not grow with the video's length, and every file lives in a per-call temporary directory.

Two passes over the video: the first finds the face in every frame (:mod:`latentsync.inference.face_pass`; landmarks are
small; a second run on the same video takes them from the on-disk cache, :mod:`latentsync.inference.track_cache`), the second
generates. When the audio is
longer than the video, the video is repeated as the length mode says (:mod:`latentsync.inference.timeline`: played forwards
and backwards by default, the reference's loop) and the first pass also writes a constant-rate copy that the second
pass can read backwards exactly. A photo is one frame shown for the whole speech.

Frame rate: the model works at 25 fps. By default the output is 25 fps too (the video resampled by timestamp, as
the reference does). With ``native_fps`` it keeps the video's own rate: faces are tracked on the native frames, the
model generates the 25 fps timeline (each model frame from the native frame nearest its time), and every native
frame gets the mouth of the model frame nearest its own time, warped with its own landmarks; all other pixels are
its own (:mod:`latentsync.inference.native_fps`). Cost: face analysis, warps and paste-backs scale with the native frame count (2.4x at 60 fps), the
diffusion (the bulk of the time) does not. The output is encoded once (libx264, ``crf``), its audio is the speech
file's own track re-encoded to AAC at its own sample rate and channels (not the 16 kHz mono the model hears).

A conversation (``LipSyncOptions.speakers``: a timeline of turns, or "auto"): the first pass tracks every face, and
the second re-generates, window by window, each face only in the frames of its turns, with fades at their edges
(:mod:`latentsync.inference.conversation`); everything else passes through untouched.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from latentsync.inference import face_pass, overlap
from latentsync import media
from latentsync.inference.audio_features import audio_windows
from latentsync.errors import InputError
from latentsync.inference.face_pass import DECODE_CHUNK
from latentsync.faces import FaceTrack, anchor_points, estimate_affines, latent_mask, mouth_mask, warp_faces
from latentsync.faces.multi_track import MultiTrackResult
from latentsync.faces.detection import MIN_FACE_HEIGHT, MIN_FACE_WIDTH
from latentsync.faces.restore import DEFAULT_STRENGTH as DEFAULT_RESTORE_STRENGTH  # noqa: F401 -- for CLI, app
from latentsync.inference.conversation import (
    SpeakerLane,
    build_lanes,
    describe_missing,
    describe_turns,
    is_automatic,
    parse_speakers,
    turn_frames_without_face,
    turns_used,
    write_side_files,
)
from latentsync.inference.frame_sources import StillFrames, VideoFrames, batched
from latentsync.inference.generation_windows import (
    GeneratedWindow,
    PreparedFaces,
    numbered,
    paste_and_restore,
    paste_window,
    restore_frames,
)
from latentsync.inference.input_checks import LARGEST_FACE, parse_speaker, probe_inputs, speaker_point
from latentsync.models.deepcache import REFERENCE_CACHE_INTERVAL, CachedUNet
from latentsync.models.low_memory import SequentialGuidance
from latentsync.models.whisper import DEFAULT_WINDOW_SCHEME, WINDOW_SCHEMES
from latentsync.inference.native_fps import native_rate_frames
from latentsync.inference.output_plan import OutputPlan, plan_output
from latentsync.sync import SyncScore
from latentsync.sync.mfcc import num_windows
from latentsync.inference.speaker_detection import SpeakerDetectionConfig, detect_speakers
from latentsync.inference.speaker_timeline import ResolvedTurn, Turn, resolve_turns
from latentsync.inference.timeline import AUDIO_LENGTH_MODES, LENGTH_MODES

FRAMES_PER_CALL = 16  # the UNet was trained on 16-frame windows; its ResNet GroupNorms span all frames of a call
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
SPEAKER_DETECTION = SpeakerDetectionConfig()  # how speakers="auto" turns SyncNet confidences into turns
_paste_window = paste_window  # the name the call uses, so that a test can inject a fault on the paste-back thread


@dataclass(frozen=True)
class LipSyncOptions:
    """The user's knobs; everything fixed by training lives in the model configs. Plain types, so that a CSV cell
    can give each one."""

    steps: int = DEFAULT_STEPS  # DDIM steps; more is slower and slightly sharper (20-50 is sensible)
    guidance_scale: float = DEFAULT_GUIDANCE  # classifier-free guidance on the audio; 1.0 disables it
    seed: int = DEFAULT_SEED  # the initial noise and the VAE samples come from a generator seeded with this
    score_sync: bool = False  # also measure Sync-C / Sync-D of the input and the output against the new audio
    score_input: bool = True  # with score_sync: the input video's scores too (False: only the output's)
    # Which face speaks: "largest", or a point "x,y" on it in the first frame with faces (pixels, or fractions of
    # the width and height when both are <= 1). The tracker follows that face; other faces are untouched.
    speaker: str = LARGEST_FACE
    # When audio and video differ: the output follows the audio with a shorter video played back and forth
    # ("pingpong"), looped ("loop") or held on its last frame ("freeze"); or it follows the video ("video"), the
    # audio cut or padded with silence.
    length_mode: str = "pingpong"
    native_fps: bool = False  # output at the video's own frame rate instead of the model's 25 fps
    crf: int = media.H264_CRF  # the output's H.264 quality: 0 lossless, 18 visually lossless (default), 51 worst
    face_cache: bool = True  # reuse (and store) this video's face track in the on-disk cache (track_cache)
    # Step caching (DeepCache, as the reference app): the whole UNet every N-th step, only its outermost layers in
    # between (about 2x faster at 3, nearly the same result); 1 computes every step in full.
    cache_interval: int = REFERENCE_CACHE_INTERVAL
    # Read, align and VAE-encode the next 16 frames on a worker thread while the current ones are denoised
    # (25 fps output); the output is byte-identical either way.
    overlap: bool = True
    # Low VRAM: the two guidance halves through the UNet one after the other and the VAE one frame at a time
    # (LatentSync 1.5 within ~6.5 GB, 1.6 under 12 GB; a little slower). Same result up to float rounding.
    low_memory: bool = False
    # Whisper's 30-s windows for speech longer than 30 s: "seamless" (overlapping windows cross-faded, so the audio
    # features do not jump every 30 s) or "reference" (the official back-to-back windows, for comparisons). Up to
    # 30 s both are the same, bit for bit (latentsync.models.whisper.plan_windows).
    whisper_windows: str = DEFAULT_WINDOW_SCHEME
    # Face restoration (GFPGAN v1.4) after paste-back, inside the generated lower face only: 0 is off, otherwise the
    # strength from 0 to 1 (DEFAULT_RESTORE_STRENGTH = 0.5 keeps half of the lip-sync output; 1 takes the restored
    # face wholly). Fixed noise, so it adds no flicker. Needs GFPGANv1.4.pth (downloaded once, ~333 MiB).
    restore: float = 0.0
    # A conversation: several faces, each lip-synced only during its turns. "" (default): one face (``speaker``).
    # "auto": who speaks when is found from the video's own soundtrack (SyncNet). Otherwise a timeline as text, CSV
    # rows ``start,end,speaker`` or JSON (docs/conversations.md); a speaker is a face id or a point "x,y" on the face.
    speakers: str = ""

    def check(self) -> None:
        if not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise InputError(f"steps must be an integer from 1 to {MAX_STEPS}, got {self.steps!r}")
        if not (isinstance(self.guidance_scale, (int, float)) and 1.0 <= self.guidance_scale <= 20.0):
            raise InputError(f"guidance_scale must be a number from 1.0 to 20.0, got {self.guidance_scale!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise InputError(f"seed must be a non-negative integer below 2**63, got {self.seed!r}")
        parse_speaker(self.speaker)
        if self.length_mode not in LENGTH_MODES:
            raise InputError(f"length_mode must be one of {', '.join(LENGTH_MODES)}, got {self.length_mode!r}")
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= media.MAX_CRF:
            raise InputError(f"crf must be an integer from 0 (lossless) to {media.MAX_CRF}, got {self.crf!r}")
        if isinstance(self.cache_interval, bool) or not isinstance(self.cache_interval, int) \
                or not 1 <= self.cache_interval <= MAX_STEPS:  # fmt: skip
            raise InputError(
                f"cache_interval must be an integer from 1 (no step caching) to {MAX_STEPS}, got {self.cache_interval!r}"
            )
        if self.whisper_windows not in WINDOW_SCHEMES:
            raise InputError(
                f"whisper_windows must be one of {', '.join(WINDOW_SCHEMES)}, got {self.whisper_windows!r}"
            )
        if isinstance(self.restore, bool) or not isinstance(self.restore, (int, float)) \
                or not 0.0 <= self.restore <= 1.0:  # fmt: skip
            raise InputError(
                f"restore must be a number from 0 (off) to 1 (the face restorer's strength), got {self.restore!r}"
            )
        if self.speakers:
            parse_speakers(self.speakers)
            if self.speaker != LARGEST_FACE:
                raise InputError("give either speaker (one face) or speakers (a conversation's turns), not both")
            for name, why in (("native_fps", "the model's 25 fps"), ("score_sync", "one face's Sync-C / Sync-D")):
                if getattr(self, name) is True:
                    raise InputError(f"speakers (a conversation) works with {why} only: turn {name} off")
        for name in ("score_sync", "score_input", "native_fps", "face_cache", "overlap", "low_memory"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class LipSyncResult:
    output: Path
    num_frames: int  # frames written, = ceil(audio seconds x fps) (or the video's frames with length_mode "video")
    audio_seconds: float  # of the speech as given
    source_frames: int  # frames of the input video at the output's rate (1 for a photo)
    frames_with_face: int  # output frames that went through the model (the rest passed through untouched)
    looped: bool  # the video was repeated (played back and forth, looped or held) because the audio is longer
    seconds: float  # wall-clock time of the call
    sync_before: SyncScore | None = None  # the input video (as played) against the new audio, if asked for
    sync_after: SyncScore | None = None  # the output against the new audio, if asked for
    small_face_frames: int = 0  # output frames whose face is below the reference's 50x80 px minimum
    # Seconds each stage of the generation pass was busy (prepare: read, align, VAE-encode; denoise; paste; encode),
    # summed over its thread; with overlap on, "prepare" ran beside the others. None for runs that recorded none.
    stage_busy: dict[str, float] | None = None
    length_mode: str = "pingpong"
    fps: float = media.VIDEO_FPS  # the output's frame rate
    photo: bool = False  # the "video" was a still image
    face_track_cached: bool = False  # face analysis was skipped: the track came from the cache
    silent_audio: bool = False  # the audio the mouth follows has no sample above -50 dBFS (media.is_silent)
    # A conversation (LipSyncOptions.speakers): the turns applied (face ids, seconds of the video), whether they were
    # found automatically, frames of a face's turns where it was not found (face id -> frames, passed through), and
    # the timeline (CSV) and numbered first frame (PNG) written next to the output.
    speaker_turns: tuple[Turn, ...] | None = None
    speakers_detected: bool = False
    turn_frames_without_face: dict[int, int] | None = None
    speakers_file: Path | None = None
    faces_image: Path | None = None

    def _length_text(self) -> str:
        if self.photo:
            return ", the photo held for the whole speech"
        output_seconds = self.num_frames / self.fps
        if self.length_mode == "video":
            if self.audio_seconds > output_seconds + 0.5 / self.fps:
                return f", audio cut to the video's {output_seconds:.2f} s"
            if self.audio_seconds < output_seconds - 1 / self.fps:
                return f", audio padded with {output_seconds - self.audio_seconds:.2f} s of silence to the video's length"
            return ""
        if self.looped:
            return {
                "pingpong": ", video played back and forth to match the audio",
                "loop": ", video looped from its start to match the audio",
                "freeze": f", video held on its last frame for the last "
                          f"{(self.num_frames - self.source_frames) / self.fps:.2f} s to match the audio",
            }[self.length_mode]
        if self.source_frames > self.num_frames:
            return f", video cut to the audio's length ({self.source_frames / self.fps:.2f} s available)"
        return ""

    def summary(self) -> str:
        text = (
            f"{self.num_frames} frames ({self.num_frames / self.fps:.2f} s at {self.fps:.4g} fps) for "
            f"{self.audio_seconds:.2f} s of audio; {self.frames_with_face} frames lip-synced{self._length_text()}"
        )
        if self.face_track_cached:
            text += "; face track reused from the cache"
        if self.speaker_turns is not None:
            how = "found in the video's own soundtrack" if self.speakers_detected else "from the timeline"
            text += f"; speaker turns ({how}): {describe_turns(list(self.speaker_turns))}"
            text += "".join(f"; {note}" for note in describe_missing(self.turn_frames_without_face))
            if self.speakers_file is not None:
                text += f"; timeline written to {self.speakers_file.name}, numbered faces to {self.faces_image.name}"
        text += f"; took {self.seconds:.1f} s"
        if self.small_face_frames:
            text += (
                f"; the face is smaller than {MIN_FACE_WIDTH}x{MIN_FACE_HEIGHT} px in {self.small_face_frames} "
                "frames, so quality may be lower there (a larger face or a higher-resolution video helps)"
            )
        if self.silent_audio:
            text += (f"; the audio is silent (no sample reaches {media.SILENCE_DBFS} dBFS): there is no speech for the "
                     "mouth to follow; check that the right audio file was given")
        if self.sync_before and self.sync_after:
            text += (
                f"; Sync-C before {self.sync_before.confidence:.2f} -> after {self.sync_after.confidence:.2f}"
                f" (Sync-D {self.sync_before.min_distance:.2f} -> {self.sync_after.min_distance:.2f})"
            )
        elif self.sync_after:
            text += f"; Sync-C {self.sync_after.confidence:.2f} (Sync-D {self.sync_after.min_distance:.2f})"
        return text


class LipSyncPipeline:
    """Models, face backend and settings, loaded once; call it per request (it mutates nothing shared)."""

    def __init__(self, *, unet, audio_encoder, vae, face_backend, resolution: int, device: torch.device,
                 dtype: torch.dtype, version: str = "1.5", sync_scorer=None, face_restorer=None,
                 speaker_scorer=None):  # fmt: skip
        if audio_encoder.feature_dim != unet.config.cross_attention_dim:
            raise ValueError(
                f"the Whisper encoder gives {audio_encoder.feature_dim}-d features but the UNet attends to "
                f"{unet.config.cross_attention_dim}-d audio"
            )
        self.unet, self.audio_encoder, self.vae, self.face_backend = unet, audio_encoder, vae, face_backend
        self.sync_scorer = sync_scorer  # optional SyncScorer for LipSyncOptions.score_sync
        # optional for LipSyncOptions.restore: a FaceRestorer, or a LazyRestorer that loads one on first use
        self.face_restorer = face_restorer
        # optional for LipSyncOptions.speakers="auto": a SyncScorer, or a Lazy that loads one on first use
        # (sync_scorer, when given, serves too)
        self.speaker_scorer = speaker_scorer
        self.resolution, self.device, self.dtype, self.version = resolution, torch.device(device), dtype, version
        self.pixel_mask = torch.from_numpy(mouth_mask(resolution)).to(self.device, dtype)  # (res, res), 1 = keep
        self.latent_mask = torch.from_numpy(latent_mask(resolution)).to(self.device, dtype)  # (res/8, res/8)

    # ------------------------------------------------------------------------------------------------ the call

    def __call__(self, video: str | Path, audio: str | Path, output: str | Path,
                 options: LipSyncOptions = LipSyncOptions(), progress: ProgressCallback | None = None
                 ) -> LipSyncResult:  # fmt: skip
        """Lip-sync ``video`` (or a photo) to ``audio`` and write ``output`` (an MP4, written atomically)."""
        started = time.perf_counter()
        progress = progress or (lambda stage, done, total: None)
        # 1. Check the inputs, and that the output can be written, before any heavy work.
        options.check()
        if options.score_sync and self.sync_scorer is None:
            raise ValueError("score_sync needs the SyncNet: load the pipeline with load_pipeline(..., sync_scores=True)")
        restore = self._restore_step(options)  # loads the restorer now: a missing file fails before any work
        info = probe_inputs(video, audio)
        photo = info.still_image
        if photo and options.length_mode == "video":
            raise InputError(
                f"length_mode 'video' makes the output as long as the video, but {info.path.name} is a photo; "
                f"use one of {', '.join(AUDIO_LENGTH_MODES)} (a photo is shown for the whole speech)"
            )
        point = speaker_point(options.speaker, info.width, info.height)
        conversation = bool(options.speakers)
        if conversation and photo:
            raise InputError(f"speakers: {info.path.name} is a photo, one frame with nothing to take turns in; give a "
                             "video, or use speaker (a point on the one face to lip-sync)")  # fmt: skip
        if conversation and is_automatic(options.speakers):
            self._speaker_scorer()  # loads (or fails to find) SyncNet before any heavy work
        media.check_output_path(output, inputs=(video, audio), create_folders=True)
        fps = media.native_fps(info) if options.native_fps and not photo else Fraction(media.VIDEO_FPS)
        speech = media.load_audio(audio)
        speech_seconds = len(speech) / media.SAMPLE_RATE
        num_out_audio = media.frames_for_duration(speech_seconds, fps)
        model_frames = media.frames_for_duration(speech_seconds)
        if options.score_sync and options.length_mode != "video" and num_windows(model_frames, len(speech)) < 1:
            raise InputError("Sync scores need at least 0.24 s of audio (six video frames); untick them for clips this short.")
        with tempfile.TemporaryDirectory(prefix="latentsync-") as workdir:
            # 2. Pass 1: find the face in every frame needed (or take the track from the cache), and keep a
            # constant-rate copy if the video will be repeated (read backwards, or from the start again).
            # Only when the video looks shorter than the output; an estimate off by a frame falls back to seeking.
            count = None if options.length_mode == "video" else num_out_audio
            if count is not None and is_automatic(options.speakers):
                count = max(count, SPEAKER_DETECTION.window_frames)  # who speaks needs a scoring window of frames
            may_repeat = not photo and count is not None and info.frames_at(fps) < count
            copy_path = Path(workdir) / "frames.mp4" if may_repeat else None
            if conversation:
                faces, first_frame = face_pass.track_every_face(self.face_backend, Path(video), info, fps, count,
                                                                copy_path, progress)  # fmt: skip
                turns, detected = self._speaker_turns(options.speakers, Path(video), info, faces, progress)
                lanes = build_lanes(faces, turns, self.resolution)
                track = _union_track(faces.num_frames, lanes)  # the frames any face is lip-synced in
                cached = False
            elif photo:
                still = media.read_image(video, info)
                track, cached = face_pass.track_photo(self.face_backend, still, point), False
                source = StillFrames(still)
            else:
                track, cached = face_pass.track_video(self.face_backend, Path(video), info, fps, count, point,
                                                      copy_path, options.face_cache, progress)  # fmt: skip
            # 3. Which source frame each output frame shows, the audio the model hears, the alignment of every frame.
            plan = plan_output(options.length_mode, track.num_frames, fps, speech, num_out_audio)
            num_out = len(plan.schedule)
            looped = track.num_frames < num_out
            if options.score_sync and num_windows(len(plan.model_sources), len(plan.waveform)) < 1:
                raise InputError("Sync scores need at least 0.24 s of audio (six video frames); untick them for clips this short.")
            matrices = np.full((track.num_frames, 2, 3), np.nan, np.float32)
            if not conversation:
                matrices[track.valid] = estimate_affines(anchor_points(track.landmarks[track.valid]), self.resolution)
            # 4. Whisper features, evaluated lazily: the log-mel maximum of the whole clip now (the reference
            # normalises over the whole clip), the encoder one 30-s window at a time as the chunks need it.
            progress("audio features", 0, 1)
            features = self.audio_encoder.features(plan.waveform, options.whisper_windows)  # behaves as (L, 5, d)
            progress("audio features", 1, 1)
            # 5. Pass 2: generate and write, 16 frames at a time. (If the container overstated the length, no copy
            # was made: seek in the original, exact when it is constant-rate and close otherwise.)
            if not photo:
                use_copy = looped and copy_path is not None and copy_path.exists()
                read_path = copy_path if use_copy else Path(video)
                read_info = media.probe(read_path) if use_copy else info
                source = VideoFrames(read_path, read_info, fps, (info.height, info.width))
            timer = overlap.StageTimes()  # busy seconds per stage, for LipSyncResult.stage_busy
            if conversation:
                frames = batched(source.frames(plan.schedule), FRAMES_PER_CALL)
                generated = self._generate_conversation(frames, plan.schedule, lanes, features, options, progress,
                                                        timer, restore)  # fmt: skip
            elif fps == media.VIDEO_FPS:
                frames = batched(source.frames(plan.schedule), FRAMES_PER_CALL)
                generated = self._generate(frames, plan.schedule, track.valid, matrices, features, options, progress,
                                           timer, track.landmarks)  # fmt: skip
            else:
                generated = self._generate_native(source, plan, track.valid, matrices, features, options, progress)
                if restore is not None:
                    generated = _restored_native(generated, plan.schedule, track, matrices, restore)
            paste = _paste_window if restore is None else functools.partial(
                paste_and_restore, paste=_paste_window, restore=restore)  # fmt: skip
            side_files = (None, None)
            with media.VideoWriter(output, width=info.width, height=info.height, fps=fps, audio=audio,
                                   crf=options.crf, audio_seconds=plan.audio_seconds,
                                   create_folders=True) as writer:  # fmt: skip
                if fps == media.VIDEO_FPS and options.overlap and not conversation:
                    # Paste-back and encoding drain the denoiser on worker threads, in order (bounded queues).
                    stages = [overlap.Stage("paste", paste), overlap.Stage("encode", writer.write)]
                    with overlap.drained(stages, timer=timer) as sink:
                        for window in generated:
                            sink.put(window)
                else:
                    for window in generated:
                        if isinstance(window, GeneratedWindow):
                            with timer.measure("paste"):
                                window = paste(window)
                        with timer.measure("encode"):
                            writer.write(window)
                if conversation:  # the timeline used and the numbered faces, for a corrected re-run: written before
                    # the output is moved into place (an output there has them beside it), removed if that fails
                    used = turns_used(turns, media.VIDEO_FPS)
                    side_files = write_side_files(output, used, faces, first_frame)
                    try:
                        writer.close()
                    except BaseException:
                        for path in side_files:
                            path.unlink(missing_ok=True)
                        raise
            # 6. Optionally, how well the mouth follows the new audio, before and after (on the 25 fps timeline).
            before = after = None
            if options.score_sync:
                passes = 2 if options.score_input else 1
                progress("sync scores", 0, passes)
                boxes = track.boxes[plan.model_sources]
                if options.score_input:
                    played = batched(source.frames(plan.model_sources), DECODE_CHUNK)
                    before = self.sync_scorer.score(played, boxes, plan.waveform)
                    progress("sync scores", 1, passes)
                after = self.sync_scorer.score(media.iter_video_frames(output, DECODE_CHUNK), boxes, plan.waveform)
                progress("sync scores", passes, passes)
            progress("done", 1, 1)
        speaker_fields = {}
        if conversation:
            speaker_fields = dict(speaker_turns=tuple(used), speakers_detected=detected,
                                  turn_frames_without_face=turn_frames_without_face(turns, lanes),
                                  speakers_file=side_files[0], faces_image=side_files[1])  # fmt: skip
        return LipSyncResult(
            output=Path(output),
            num_frames=num_out,
            audio_seconds=speech_seconds,
            source_frames=track.num_frames,
            frames_with_face=int(track.valid[plan.schedule].sum()),
            looped=looped,
            seconds=time.perf_counter() - started,
            sync_before=before,
            sync_after=after,
            small_face_frames=int((track.valid & track.small)[plan.schedule].sum()),
            length_mode=options.length_mode,
            fps=float(fps),
            photo=photo,
            face_track_cached=cached,
            silent_audio=media.is_silent(plan.waveform),
            stage_busy=dict(timer.busy),
            **speaker_fields,
        )

    # ------------------------------------------------------------------------------------------------ conversations

    def _speaker_scorer(self):
        """The SyncNet that finds who speaks (``speakers="auto"``), loaded on first use."""
        scorer = self.sync_scorer if self.sync_scorer is not None else self.speaker_scorer
        if scorer is None:
            raise ValueError("speakers='auto' needs SyncNet: load the pipeline with load_pipeline(...), which "
                             "provides it, or pass speaker_scorer= to LipSyncPipeline")  # fmt: skip
        return scorer.get() if hasattr(scorer, "get") else scorer

    def _speaker_turns(self, speakers: str, video: Path, info: media.MediaInfo, faces: MultiTrackResult,
                       progress: ProgressCallback) -> tuple[list[ResolvedTurn], bool]:  # fmt: skip
        """The turns of ``speakers`` tied to face tracks, and whether they were found automatically."""
        timeline = parse_speakers(speakers)
        if timeline is not None:
            try:
                return resolve_turns(timeline, faces), False
            except InputError as err:
                raise InputError(f"speakers: {err}") from None
        if not info.has_audio:
            raise InputError(f"speakers: auto finds who speaks from the video's own soundtrack, and {info.path.name} "
                             "has none; give a timeline of turns instead (docs/conversations.md)")  # fmt: skip
        progress("finding who speaks", 0, 1)
        chunks = lambda: media.iter_video_frames(video, DECODE_CHUNK, count=faces.num_frames, info=info,  # noqa: E731
                                                 fps=Fraction(media.VIDEO_FPS))  # fmt: skip
        timeline = detect_speakers(self._speaker_scorer(), chunks, faces, media.load_audio(video), SPEAKER_DETECTION)
        progress("finding who speaks", 1, 1)
        return resolve_turns(timeline, faces), True

    def _generate_conversation(self, batches: Iterator[np.ndarray], schedule: np.ndarray, lanes: list[SpeakerLane],
                               features: torch.Tensor, options: LipSyncOptions, progress: ProgressCallback,
                               timer: overlap.StageTimes,
                               restore: Callable[..., np.ndarray] | None) -> Iterator[np.ndarray]:  # fmt: skip
        """Output frames at 25 fps: in each window, every lane's face with a turn there re-generated and pasted back
        (then restored, with ``restore``), weighted by the lane's fade; all other pixels untouched."""
        noise, generator = self._initial_noise(options)
        denoisers = {lane.track_id: self._denoiser(options) for lane in lanes}  # a step cache per face
        total = math.ceil(len(schedule) / FRAMES_PER_CALL)
        for k, (start, frames) in enumerate(numbered(batches)):
            progress("lip sync", k, total)
            sources = schedule[start : start + len(frames)]
            out = frames
            for lane in lanes:
                keep = lane.active[sources]
                if not keep.any():
                    continue
                matrices = lane.matrices[sources[keep]]
                with timer.measure("prepare"):
                    prepared = self._prepare_faces(frames[keep], matrices, generator, _vae_batch(options))
                audio = audio_windows(features, start, len(frames))[torch.from_numpy(keep).to(features.device)]
                with timer.measure("denoise"):
                    faces = self._denoise_faces(prepared, audio, noise, options, denoisers[lane.track_id])
                with timer.measure("paste"):
                    window = GeneratedWindow(out, keep, faces, matrices, lane.track.landmarks[sources[keep]])
                    pasted = _paste_window(window)
                    if restore is not None:
                        pasted = restore_frames(pasted, keep, window.landmarks, matrices, restore)
                    out = blend_frames(out, pasted, lane.weight[sources])
            yield out
        progress("lip sync", total, total)

    # ------------------------------------------------------------------------------------------------ steps

    def _initial_noise(self, options: LipSyncOptions) -> tuple[torch.Tensor, torch.Generator]:
        generator = torch.Generator("cpu").manual_seed(options.seed)
        size = self.resolution // 8
        # One noise draw shared by every frame of the video (the reference's inference recipe).
        noise = torch.randn((1, LATENT_CHANNELS, 1, size, size), generator=generator, dtype=torch.float32)
        return noise.to(self.device, self.dtype), generator

    def _generate(self, batches: Iterator[np.ndarray], schedule: np.ndarray, valid: np.ndarray,
                  matrices: np.ndarray, features: torch.Tensor, options: LipSyncOptions,
                  progress: ProgressCallback, timer: overlap.StageTimes | None = None,
                  landmarks: np.ndarray | None = None) -> Iterator[GeneratedWindow]:  # fmt: skip
        """Windows at 25 fps, ready to paste back (:func:`_paste_window`): each model frame's own face with its
        mouth re-generated.

        With ``options.overlap`` the next window is read, aligned and VAE-encoded on a worker thread while this
        thread denoises the current one (one worker: the VAE's draws from the seeded generator stay in order, so
        the output is byte-identical)."""
        noise, generator = self._initial_noise(options)
        denoiser = self._denoiser(options)  # one per video: the step cache persists across windows
        total = math.ceil(len(schedule) / FRAMES_PER_CALL)
        timer = timer if timer is not None else overlap.StageTimes()

        def prepare(item: tuple[int, np.ndarray]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, PreparedFaces | None]:
            start, frames = item
            sources = schedule[start : start + len(frames)]
            keep = valid[sources]  # frames without a usable face pass through untouched
            prepared = (self._prepare_faces(frames[keep], matrices[sources[keep]], generator, _vae_batch(options))
                        if keep.any() else None)  # fmt: skip
            return start, frames, sources, keep, prepared

        def timed_prepare(item: tuple[int, np.ndarray]):
            with timer.measure("prepare"):
                return prepare(item)

        windows = numbered(batches)
        prepared_windows = (overlap.pipelined(windows, [overlap.Stage("prepare", prepare)], timer=timer)
                            if options.overlap else map(timed_prepare, windows))  # fmt: skip
        try:
            for k, (start, frames, sources, keep, prepared) in enumerate(prepared_windows):
                progress("lip sync", k, total)
                faces = None
                if prepared is not None:
                    audio = audio_windows(features, start, len(frames))[torch.from_numpy(keep).to(features.device)]
                    with timer.measure("denoise"):
                        faces = self._denoise_faces(prepared, audio, noise, options, denoiser)
                yield GeneratedWindow(frames, keep, faces, matrices[sources[keep]],
                                      None if landmarks is None else landmarks[sources[keep]])  # fmt: skip
        finally:
            close = getattr(prepared_windows, "close", None)
            if close is not None:  # stop and join the worker thread when the consumer stops early
                close()
        progress("lip sync", total, total)

    def _generate_native(self, source, plan: OutputPlan, valid: np.ndarray, matrices: np.ndarray,
                         features: torch.Tensor, options: LipSyncOptions,
                         progress: ProgressCallback) -> Iterator[np.ndarray]:  # fmt: skip
        """Output frames at the video's own rate (:func:`latentsync.inference.native_fps.native_rate_frames`): the model runs
        on the 25 fps timeline and each output frame takes the mouth of the model frame nearest its time."""
        noise, generator = self._initial_noise(options)
        denoiser = self._denoiser(options)  # one per video: the step cache persists across windows

        def lipsync(first: int, faces: np.ndarray, face_matrices: np.ndarray, ok: np.ndarray) -> torch.Tensor:
            audio = audio_windows(features, first, len(ok))[torch.from_numpy(ok).to(features.device)]
            return self._lipsync_faces(faces, face_matrices, audio, noise, generator, options, denoiser)

        yield from native_rate_frames(source, plan, valid, matrices, lipsync, self.pixel_mask, self.resolution,
                                      FRAMES_PER_CALL, progress)  # fmt: skip

    def _lipsync_faces(self, frames: np.ndarray, matrices: np.ndarray, audio: torch.Tensor, noise: torch.Tensor,
                       generator: torch.Generator, options: LipSyncOptions,
                       denoiser: CachedUNet | None = None) -> torch.Tensor:  # fmt: skip
        """Aligned faces of ``frames`` with the mouth re-generated: (n, 3, res, res) float, nominally in [-1, 1]
        (not clamped: see :meth:`_denoise_faces`)."""
        if denoiser is None:
            denoiser = self._denoiser(options)
        prepared = self._prepare_faces(frames, matrices, generator, _vae_batch(options))
        return self._denoise_faces(prepared, audio, noise, options, denoiser)

    def _restore_step(self, options: LipSyncOptions) -> Callable[..., np.ndarray] | None:
        """The face restorer bound to this pipeline's generated region and ``options.restore`` (None when off):
        (frames, landmarks, alignments) -> restored frames. Loads the restorer on first use."""
        if not options.restore:
            return None
        if self.face_restorer is None:
            raise ValueError("restore needs the face restorer: load the pipeline with load_pipeline(...), which "
                             "provides it, or pass face_restorer= to LipSyncPipeline")  # fmt: skip
        restorer = self.face_restorer.get() if hasattr(self.face_restorer, "get") else self.face_restorer
        generated = 1.0 - self.pixel_mask.float().cpu().numpy()  # (res, res), 1 where the model generates
        return functools.partial(restorer, generated=generated, strength=float(options.restore))

    def _denoiser(self, options: LipSyncOptions) -> CachedUNet | SequentialGuidance:
        """The UNet as the denoising loop calls it: with step caching (interval 1 passes straight through) and, for
        low memory, the guidance halves one after the other (one step cache per half: a shared one would mix them)."""
        if options.low_memory:
            return SequentialGuidance(*(CachedUNet(self.unet, options.cache_interval) for _ in range(2)))
        return CachedUNet(self.unet, options.cache_interval)

    @torch.inference_mode()  # (grad mode is per thread: with overlap on, this runs on a worker thread)
    def _prepare_faces(self, frames: np.ndarray, matrices: np.ndarray, generator: torch.Generator,
                       vae_batch: int | None = None) -> PreparedFaces:  # fmt: skip
        """Align ``frames`` and VAE-encode their masked and whole faces (the VAE samples from ``generator``)."""
        faces = torch.from_numpy(warp_faces(frames, matrices, self.resolution)).to(self.device)  # (n, res, res, 3)
        pixels = faces.permute(0, 3, 1, 2).to(self.dtype) / 127.5 - 1.0  # (n, 3, res, res) in [-1, 1]
        masked = self.vae.encode(pixels * self.pixel_mask, generator, batch_size=vae_batch)  # (n, 4, h, w)
        reference = self.vae.encode(pixels, generator, batch_size=vae_batch)  # (n, 4, h, w): the frame's own face
        return PreparedFaces(pixels, masked, reference)

    @torch.inference_mode()
    def _denoise_faces(self, prepared: PreparedFaces, audio: torch.Tensor, noise: torch.Tensor, options: LipSyncOptions,
                       denoiser: CachedUNet | SequentialGuidance) -> torch.Tensor:  # fmt: skip
        """The DDIM loop and the VAE decode: (n, 3, res, res) float faces, nominally in [-1, 1]."""
        from diffusers import DDIMScheduler

        pixels, masked, reference = prepared.pixels, prepared.masked, prepared.reference
        n = len(pixels)
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
        denoiser.set_timesteps(scheduler.timesteps)  # a call's step index = the position of its t in these
        latents = noise.expand(1, LATENT_CHANNELS, n, *noise.shape[-2:]) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = torch.cat([scheduler.scale_model_input(model_input, t), condition], dim=1)
            eps = denoiser(model_input, t, audio)  # (b, 4, n, h, w)
            if guided:
                uncond, cond = eps.chunk(2)
                eps = uncond + options.guidance_scale * (cond - uncond)
            latents = scheduler.step(eps, t, latents).prev_sample

        decoded = self.vae.decode(latents[0].permute(1, 0, 2, 3), batch_size=_vae_batch(options))  # (n, 3, res, res)
        keep = self.pixel_mask  # known pixels come back exactly from the input face
        # Not clamped here: the reference resizes the face to the crop size first and clamps after the inverse
        # warp (README §4.10), which paste_back does; clamping first moves pixels where the VAE overshoots.
        return (decoded * (1 - keep) + pixels * keep).float()


def blend_frames(before: np.ndarray, after: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Frames ``before + weight * (after - before)`` per frame, rounded to uint8: weight 1 gives ``after`` and weight
    0 ``before`` exactly, and pixels that ``after`` left unchanged stay exactly as they were."""
    full = weight >= 1.0
    if full.all():
        return after
    out = after.copy()
    for i in np.flatnonzero(~full):
        mixed = before[i].astype(np.float32) + float(weight[i]) * (after[i].astype(np.float32) - before[i])
        out[i] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return out


def _union_track(num_frames: int, lanes: list[SpeakerLane]) -> FaceTrack:
    """The frames any conversation lane lip-syncs, as a FaceTrack for the output plan and the result's counts."""
    valid = np.zeros(num_frames, bool)
    small = np.zeros(num_frames, bool)
    for lane in lanes:
        valid |= lane.active
        small |= lane.active & lane.track.small
    nan = np.full((num_frames, 68, 2), np.nan, np.float32)
    return FaceTrack(landmarks=nan, boxes=np.full((num_frames, 4), np.nan, np.float32), valid=valid, small=small)


def _restored_native(frames: Iterator[np.ndarray], schedule: np.ndarray, track, matrices: np.ndarray,
                     restore: Callable[..., np.ndarray]) -> Iterator[np.ndarray]:  # fmt: skip
    """Native-rate output batches (in ``schedule`` order) with the face restorer applied to the frames with a face."""
    start = 0
    for batch in frames:
        sources = schedule[start : start + len(batch)]
        keep = track.valid[sources]
        yield restore_frames(batch, keep, track.landmarks[sources[keep]], matrices[sources[keep]], restore)
        start += len(batch)


def _vae_batch(options: LipSyncOptions) -> int | None:
    """Frames per VAE call: one at a time for low memory, else the VAE's own chunk size."""
    from latentsync.models.vae import LOW_MEMORY_VAE_BATCH_SIZE  # (diffusers: imported when a video is processed)

    return LOW_MEMORY_VAE_BATCH_SIZE if options.low_memory else None
