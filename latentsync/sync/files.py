"""Score a video file: find the face track, decode the audio, run the streaming SyncNet scorer.

Shared by the sync CLI (``python -m latentsync.sync``) and the data toolchain's sync filter.
"""

from __future__ import annotations

from pathlib import Path

CHUNK_FRAMES = 64


def check_inputs(video: Path, audio: Path | None):
    """ffprobe only: ``video`` has a picture and ``audio`` (default: the video itself) has sound -> the video's info."""
    from latentsync import media

    info = media.check_video(media.probe(video))  # a picture that plays: not audio only, not a still, not empty
    if audio is not None:
        media.check_audio(media.probe(audio))
    else:
        media.check_audio(info, " Pass the speech to score against with --audio.")  # its own soundtrack
    return info


def score_file(video: Path, audio: Path | None, scorer, face_backend):
    """Score ``video`` against ``audio`` (default: the video's own audio track) -> SyncScore."""
    from latentsync import media
    from latentsync.faces import FaceTracker

    info = check_inputs(video, audio)
    waveform = media.load_audio(audio if audio is not None else video)
    tracker = FaceTracker(face_backend, small_faces=True)  # as the lip-sync pipeline: small faces are scored too
    for chunk in media.iter_video_frames(video, CHUNK_FRAMES, info=info):
        tracker.update(chunk)
    track = tracker.finish()
    return scorer.score(media.iter_video_frames(video, CHUNK_FRAMES, info=info), track.boxes, waveform)
