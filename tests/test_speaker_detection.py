"""speakers="auto" (latentsync.inference.speaker_detection): the decisions on constructed confidence tables, and the
scorer path on the real SyncNet v2 architecture with random weights (tiny_checkpoints) over a two-person clip."""

from __future__ import annotations

import numpy as np
import pytest

from latentsync.errors import InputError
from latentsync.inference.speaker_detection import (
    SpeakerDetectionConfig,
    decide_speakers,
    detect_speakers,
    score_tracks,
    window_starts,
)
from latentsync.inference.speaker_timeline import Turn
from tests.two_faces import ASSETS, FRAMES, two_face_frames

CONFIG = SpeakerDetectionConfig()  # 25-frame windows every 5 frames, on 2.0 / off 1.5, 0.6 s minimum turn
SECONDS = 10
N_FRAMES = SECONDS * 25


def table(*rows: list[tuple[float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (from_second, to_second, confidence) per track -> (tracks, windows) scores and window starts; windows
    whose centre lies in [from, to) get the confidence, others 0.5 (a silent face)."""
    starts = window_starts(N_FRAMES, CONFIG)
    centres = (starts + CONFIG.window_frames / 2) / 25
    scores = np.full((len(rows), len(starts)), 0.5)
    for i, spans in enumerate(rows):
        for start, end, value in spans:
            scores[i, (centres >= start) & (centres < end)] = value
    return scores, starts


def spans(turns: list[Turn]) -> list[tuple[int, float, float]]:
    return [(t.face_id, round(t.start, 1), round(t.end, 1)) for t in turns]


def test_window_starts_cover_the_video():
    starts = window_starts(N_FRAMES, CONFIG)
    assert starts[0] == 0 and starts[-1] == N_FRAMES - 25 and np.all(np.diff(starts) == 5)
    assert len(window_starts(24, CONFIG)) == 0


def test_alternating_speakers_switch():
    scores, starts = table([(0, 4, 5.0)], [(4, 10, 5.0)])
    assert spans(decide_speakers(scores, starts, N_FRAMES)) == [(0, 0.0, 4.0), (1, 4.0, 10.0)]


def test_short_blip_is_dropped_and_hysteresis_keeps_the_speaker():
    scores, starts = table([(0, 10, 4.0)], [(5, 5.4, 6.0), (7, 10, 4.2)])  # a 0.4 s blip; later a 0.2 lead
    assert spans(decide_speakers(scores, starts, N_FRAMES)) == [(0, 0.0, 10.0)]


def test_dip_between_thresholds_does_not_end_the_turn():
    scores, starts = table([(0, 3, 4.0), (3, 4, 1.7), (4, 10, 4.0)])  # 1.7: below on (2.0), above off (1.5)
    assert spans(decide_speakers(scores, starts, N_FRAMES)) == [(0, 0.0, 10.0)]
    scores, starts = table([(0, 3, 4.0), (3, 4, 1.0), (4, 10, 4.0)])  # below off: two turns
    assert spans(decide_speakers(scores, starts, N_FRAMES)) == [(0, 0.0, 3.0), (0, 4.0, 10.0)]


def test_overlap_only_when_allowed():
    scores, starts = table([(0, 6, 5.0)], [(4, 10, 4.0)])
    assert spans(decide_speakers(scores, starts, N_FRAMES)) == [(0, 0.0, 6.0), (1, 6.0, 10.0)]
    both = SpeakerDetectionConfig(allow_overlap=True)
    assert spans(decide_speakers(scores, starts, N_FRAMES, both)) == [(0, 0.0, 6.0), (1, 4.0, 10.0)]


def test_missing_face_cannot_speak_and_ids_are_kept():
    scores, starts = table([(0, 10, 5.0)], [(0, 10, 3.0)])
    scores[0, 20:] = np.nan  # face 7 leaves: face 9 takes over
    turns = decide_speakers(scores, starts, N_FRAMES, track_ids=[7, 9])
    assert [t.face_id for t in turns] == [7, 9] and turns[0].end == turns[1].start


def test_silence_asks_for_a_timeline():
    scores, starts = table([], [])
    with pytest.raises(InputError, match=r"no speaking face.*best 0.50.*give a timeline"):
        decide_speakers(scores, starts, N_FRAMES)
    with pytest.raises(InputError, match="best nan"):
        decide_speakers(np.full_like(scores, np.nan), starts, N_FRAMES)


def test_config_checks():
    with pytest.raises(ValueError, match="off_threshold"):
        SpeakerDetectionConfig(on_threshold=1.0, off_threshold=2.0)
    with pytest.raises(ValueError, match="window_frames"):
        SpeakerDetectionConfig(window_frames=5)


@pytest.fixture(scope="module")
def scorer_inputs(tiny_checkpoints):
    from latentsync.checkpoints import resolve_syncnet_v2
    from latentsync.faces import load_landmark_backend
    from latentsync.faces.multi_track import track_all_faces
    from latentsync.media import load_audio
    from latentsync.sync import SyncScorer

    frames = two_face_frames()
    frames[30:35, :, 320:] = 128  # the right face hidden in frames 30-34
    result = track_all_faces(load_landmark_backend("dlib"), [frames])
    scorer = SyncScorer.from_checkpoint(resolve_syncnet_v2(checkpoints_dir=tiny_checkpoints))
    audio = load_audio(ASSETS / "demo_speech.wav")[: FRAMES * 640]
    return scorer, frames, result, audio


def test_scores_on_the_real_network_align_with_windows(scorer_inputs):
    scorer, frames, result, audio = scorer_inputs
    scores, starts = score_tracks(scorer, frames, result, audio)
    # 50 frames, 2 s of audio: 45 SyncNet windows cover frames 0-48; 25-frame windows every 5 frames start at 0-20.
    assert starts.tolist() == [0, 5, 10, 15, 20]
    assert scores.shape == (2, 5)
    assert np.isfinite(scores[0]).all() and (scores[0] >= 0).all()  # Sync-C = median - min >= 0
    # Face 1 is hidden in frames 30-34: windows starting at 10, 15, 20 contain them.
    assert np.isfinite(scores[1, :2]).all() and np.isnan(scores[1, 2:]).all()
    # The left face's window 0 equals scoring its first 25 frames alone: windows are aligned with the frames.
    from latentsync.inference.speaker_detection import SCORE_MAX_OFFSET
    from latentsync.sync.crop import smooth_face_track
    from latentsync.sync.scoring import score_embeddings

    track = smooth_face_track(result.tracks[0].boxes)
    lips = scorer.embed_lips([frames], track, 45)[:21]
    voice = scorer.embed_audio(audio, 45)[:21]
    assert scores[0, 0] == pytest.approx(score_embeddings(lips, voice, SCORE_MAX_OFFSET).confidence, abs=1e-5)


def test_detect_speakers_end_to_end_gives_a_timeline_or_asks_for_one(scorer_inputs):
    scorer, frames, result, audio = scorer_inputs
    low = SpeakerDetectionConfig(on_threshold=0.0, off_threshold=0.0, min_turn_seconds=0.2)
    turns = detect_speakers(scorer, frames, result, audio, low)  # random weights: every face "confident"
    assert turns and {t.face_id for t in turns} <= {0, 1} and turns[0].start == 0.0 and turns[-1].end == 2.0
    with pytest.raises(InputError, match="give a timeline"):
        detect_speakers(scorer, frames, result, audio, SpeakerDetectionConfig(on_threshold=1e6, off_threshold=1e6))
    with pytest.raises(InputError, match="needs the video's own soundtrack"):
        detect_speakers(scorer, frames, result, np.zeros(0, np.float32))
