"""``speakers="auto"``: who speaks when, from SyncNet v2 confidence of each face track against the video's own audio.

Two parts. :func:`score_tracks` (the network): one audio embedding per SyncNet window (5 frames) for the whole
soundtrack, lip embeddings per face track, then Sync-C (the offset search's median minus minimum) over sliding
windows of ``window_frames`` (~1 s) every ``hop_frames``: a (tracks, windows) confidence table, NaN where the face is
missing in part of the window. :func:`decide_speakers` (pure logic, tested on constructed tables): per window the
track with the highest confidence at least ``on_threshold`` speaks; a speaker keeps the turn while its confidence
stays at least ``off_threshold`` and no other track beats it by ``switch_margin`` (hysteresis); with
``allow_overlap`` a second track above ``on_threshold`` speaks too; runs shorter than ``min_turn_seconds`` are
dropped, and a speaker's pauses shorter than that which no other face fills are closed. The result is a
:mod:`~latentsync.inference.speaker_timeline` (face ids), which a user can correct.

The scorer streams: the video is decoded once per face track (chunks of frames, never the whole video in memory),
so memory does not grow with the video's length; the audio embeddings are computed once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from latentsync.errors import InputError
from latentsync.faces.multi_track import MultiTrackResult
from latentsync.inference.speaker_timeline import Turn
from latentsync.media.probe import VIDEO_FPS

NO_SPEAKER = -1
SYNC_WINDOW_FRAMES = 5  # SyncNet's lip window (latentsync.sync.syncnet.FRAMES_PER_WINDOW)
SCORE_MAX_OFFSET = 7  # offset search in a 1 s window: ±7 frames (the full clip's ±15 would mostly hit padding)


@dataclass(frozen=True)
class SpeakerDetectionConfig:
    """How windows of confidence become turns."""

    window_frames: int = VIDEO_FPS  # ~1 s of SyncNet windows per confidence value
    hop_frames: int = 5  # one value every 0.2 s
    on_threshold: float = 2.0  # Sync-C a face needs to start speaking (real talking faces score ~3-9)
    off_threshold: float = 1.5  # ... and keeps speaking while at or above this (hysteresis)
    switch_margin: float = 0.5  # another face takes the turn only when it beats the speaker by this much
    min_turn_seconds: float = 0.6  # shorter runs (blips) are dropped
    allow_overlap: bool = False  # True: every face above on_threshold speaks, not only the best

    def __post_init__(self) -> None:
        if self.window_frames < SYNC_WINDOW_FRAMES + 1 or self.hop_frames < 1:
            raise ValueError(f"window_frames must be > {SYNC_WINDOW_FRAMES} and hop_frames >= 1, got "
                             f"{self.window_frames}, {self.hop_frames}")  # fmt: skip
        if self.off_threshold > self.on_threshold:
            raise ValueError(f"off_threshold ({self.off_threshold}) must not exceed on_threshold ({self.on_threshold})")
        if self.min_turn_seconds < 0 or self.switch_margin < 0:
            raise ValueError("min_turn_seconds and switch_margin must be >= 0")


def window_starts(num_frames: int, config: SpeakerDetectionConfig) -> np.ndarray:
    """First frame of each scoring window: 0, hop, 2·hop, ... while the window fits in the video."""
    last = num_frames - config.window_frames
    return np.arange(0, last + 1, config.hop_frames) if last >= 0 else np.empty(0, int)


def _active(scores: np.ndarray, config: SpeakerDetectionConfig) -> np.ndarray:
    """(tracks, windows) confidences (NaN = face missing) -> (tracks, windows) bool: speaking."""
    n_tracks, n_windows = scores.shape
    filled = np.where(np.isnan(scores), -np.inf, scores)
    active = np.zeros_like(filled, dtype=bool)
    current = NO_SPEAKER
    for w in range(n_windows):
        column = filled[:, w]
        best = int(np.argmax(column)) if n_tracks else NO_SPEAKER
        if current != NO_SPEAKER and column[current] < config.off_threshold:
            current = NO_SPEAKER  # the speaker fell silent (or left)
        if current == NO_SPEAKER:
            if best != NO_SPEAKER and column[best] >= config.on_threshold:
                current = best
        elif best != current and column[best] >= config.on_threshold and \
                column[best] > column[current] + config.switch_margin:  # fmt: skip
            current = best
        if current != NO_SPEAKER:
            active[current, w] = True
        if config.allow_overlap:
            active[:, w] |= column >= config.on_threshold
    return active


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index runs of True."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def decide_speakers(scores: np.ndarray, starts: np.ndarray, num_frames: int,
                    config: SpeakerDetectionConfig = SpeakerDetectionConfig(),
                    track_ids: list[int] | None = None, fps: int = VIDEO_FPS) -> list[Turn]:  # fmt: skip
    """Confidence table (tracks, windows) with window start frames -> turns (face ids), sorted by start.

    Window w stands for the ``hop_frames`` around its centre (the first and last windows reach the video's ends).
    InputError when no face is confident anywhere (silence, no talking face): the user must give a timeline."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(starts):
        raise ValueError(f"scores must be (tracks, {len(starts)} windows), got {scores.shape}")
    track_ids = list(range(scores.shape[0])) if track_ids is None else list(track_ids)
    active = _active(scores, config)
    centres = np.asarray(starts, dtype=np.float64) + config.window_frames / 2
    bounds = np.concatenate([[0.0], (centres[1:] + centres[:-1]) / 2, [float(num_frames)]])  # window w: [b_w, b_w+1)
    min_frames = config.min_turn_seconds * fps
    # Smoothing: drop blips (runs shorter than a turn), then close a speaker's short pauses that nobody else fills.
    for row in range(len(active)):
        for a, b in _runs(active[row]):
            if bounds[b] - bounds[a] < min_frames:
                active[row, a:b] = False
    for row in range(len(active)):
        others = np.delete(active, row, axis=0).any(axis=0)
        for a, b in _runs(~active[row]):
            if 0 < a and b < active.shape[1] and bounds[b] - bounds[a] < min_frames and not others[a:b].any():
                active[row, a:b] = True
    turns = [Turn(round(bounds[a] / fps, 3), round(bounds[b] / fps, 3), face_id=int(track_id))
             for row, track_id in enumerate(track_ids) for a, b in _runs(active[row])]
    if not turns:
        best = np.nanmax(scores) if np.isfinite(scores).any() else float("nan")
        raise InputError(f"speakers: auto found no speaking face: no face track reached SyncNet confidence "
                         f"{config.on_threshold:g} for {config.min_turn_seconds:g} s (best {best:.2f}); "
                         "give a timeline of turns instead (docs/conversations.md)")  # fmt: skip
    return sorted(turns, key=lambda t: (t.start, t.face_id))


FrameSource = np.ndarray | Callable[[], Iterable[np.ndarray]]


def _chunks(frames: FrameSource) -> tuple[Callable[[], Iterable[np.ndarray]], int | None]:
    """(a factory of fresh chunk iterators, the frame count if known) for an array or a factory."""
    if isinstance(frames, np.ndarray):
        return (lambda: [frames]), len(frames)
    return frames, None


def score_tracks(scorer, frames: FrameSource, result: MultiTrackResult, audio: np.ndarray,
                 config: SpeakerDetectionConfig = SpeakerDetectionConfig()) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Sync-C of every track in sliding windows -> (scores (tracks, windows) float64 with NaN where the face is
    missing in the window, window start frames). ``scorer``: a :class:`latentsync.sync.SyncScorer`; ``frames``:
    the video at 25 fps as (N, H, W, 3) uint8 RGB, or a function returning a fresh iterator of such chunks (called
    once per track: the video is streamed, not held); ``result``: its face tracks (N = ``result.num_frames``);
    ``audio``: the video's own 16 kHz mono soundtrack."""
    import torch

    from latentsync.sync.crop import smooth_face_track
    from latentsync.sync.mfcc import num_windows
    from latentsync.sync.scoring import score_embeddings

    if audio is None or len(audio) == 0:
        raise InputError("speakers: auto needs the video's own soundtrack and this video has none; "
                         "give a timeline of turns instead (docs/conversations.md)")  # fmt: skip
    chunks, count = _chunks(frames)
    num_frames = result.num_frames if count is None else count
    if num_frames != result.num_frames:
        raise ValueError(f"{num_frames} frames but face tracks of {result.num_frames}")
    n_sync = num_windows(num_frames, len(audio))  # SyncNet window t covers frames t ... t + 4
    starts = window_starts(n_sync + SYNC_WINDOW_FRAMES - 1, config)
    scores = np.full((len(result.tracks), len(starts)), np.nan)
    if n_sync < 1 or len(starts) == 0:
        raise InputError(f"speakers: auto needs at least {config.window_frames} frames of video with sound; "
                         f"got {num_frames} frames")  # fmt: skip
    audio_emb = scorer.embed_audio(audio, n_sync)  # (n_sync, D)
    span = config.window_frames - SYNC_WINDOW_FRAMES + 1  # SyncNet windows inside one scoring window
    for row, track in enumerate(result.tracks):
        present = track.present
        track_boxes = smooth_face_track(track.boxes)  # NaN rows bridged in gaps, held at the ends
        lip_emb = scorer.embed_lips(chunks(), track_boxes, n_sync)  # (n_sync, D)
        for w, start in enumerate(starts):
            if not present[start : start + config.window_frames].all():
                continue
            with torch.inference_mode():
                scores[row, w] = score_embeddings(lip_emb[start : start + span], audio_emb[start : start + span],
                                                  SCORE_MAX_OFFSET).confidence  # fmt: skip
    return scores, starts


def detect_speakers(scorer, frames: FrameSource, result: MultiTrackResult, audio: np.ndarray,
                    config: SpeakerDetectionConfig = SpeakerDetectionConfig()) -> list[Turn]:  # fmt: skip
    """The automatic timeline: :func:`score_tracks` then :func:`decide_speakers`."""
    if not result.tracks:
        raise InputError("speakers: auto found no face in the video; give a timeline of turns instead")
    scores, starts = score_tracks(scorer, frames, result, audio, config)
    return decide_speakers(scores, starts, result.num_frames, config, [t.track_id for t in result.tracks])
