"""The CPU stages, each a function of one clip (README §6 stages 1-4): check, resample, shots, segments.

Signature of every stage: ``(source, rel, out_folder, options, models) -> Outcome`` where ``source`` is the input
file, ``rel`` its path relative to the stage's source folder (mirrored under ``out_folder``). They write only under
``out_folder``, each file atomically.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from latentsync import media
from latentsync.data.decisions import SEGMENT_SECONDS, piece_decision
from latentsync.data.ffmpeg import run_ffmpeg
from latentsync.data.outcome import Outcome, drop, keep
from latentsync.data.records import TMP_PREFIX, mp4_name, stem_of, tmp_path_for
from latentsync.errors import InputError

DROP_UNREADABLE = "unreadable file"
DROP_NO_VIDEO = "no video stream"
DROP_NO_AUDIO = "no audio stream"
DROP_CORRUPT = "corrupt stream"

CHECK_CHUNK_FRAMES = 32  # frames decoded at a time while checking (decoded only to find errors, then discarded)
FPS_TOLERANCE = 0.01  # a stream within this of 25 fps is 25 fps: its picture is copied, not re-encoded
COPYABLE_VIDEO_CODECS = frozenset({"h264", "hevc", "mpeg4"})  # pictures that an MP4 can hold as they are
# Shots are cut from the resampled video with re-encoding (as scenedetect's split-video does) and a keyframe forced
# every SEGMENT_SECONDS, so that the segmenter's stream copy cuts exactly every 5 s.
SHOT_PRESET = "veryfast"  # scenedetect split-video's preset
SHOT_DETECTOR_THRESHOLD = 2.0  # reference: `scenedetect detect-adaptive --threshold 2`
AUDIO_ARGS = ("-c:a", "aac", "-b:a", media.AAC_BITRATE, "-ar", str(media.SAMPLE_RATE), "-ac", "1")


def check(source: Path, rel: str, out_folder: Path, options, models) -> Outcome:
    """Stage 1: keep files that probe, have a picture and a sound track, and decode without errors.

    Nothing is written (the reference deletes broken files in place; we only record them); the output is the raw
    file itself.
    """
    try:
        info = media.probe(source)
    except InputError as err:
        return drop(DROP_UNREADABLE, str(err))
    try:
        media.check_video(info)
    except InputError as err:
        return drop(DROP_NO_VIDEO, str(err))
    if not info.has_audio:
        return drop(DROP_NO_AUDIO, f"{source.name} has no audio track")
    try:
        frames = sum(len(chunk) for chunk in media.iter_video_frames(source, CHECK_CHUNK_FRAMES, info=info))
        samples = len(media.load_audio(source))
    except InputError as err:
        return drop(DROP_CORRUPT, str(err))
    return keep(rel, frames=frames, audio_seconds=samples / media.SAMPLE_RATE)


def resample(source: Path, rel: str, out_folder: Path, options, models) -> Outcome:
    """Stage 2: 25 fps video (stream copy when it already is) and 16 kHz mono AAC audio, as an MP4."""
    info = media.probe(source)
    dest = out_folder / mp4_name(rel)
    tmp = tmp_path_for(dest)
    copy = abs(info.fps - media.VIDEO_FPS) < FPS_TOLERANCE and not info.variable_fps
    copy = copy and info.video_codec in COPYABLE_VIDEO_CODECS
    reencode = ["-vf", f"fps={media.VIDEO_FPS}", "-c:v", "libx264", "-crf", str(media.H264_CRF), "-pix_fmt", "yuv420p"]
    video_args = ["-c:v", "copy"] if copy else reencode
    try:
        run_ffmpeg("-i", str(source), "-map", "0:v:0", "-map", "0:a:0", *video_args, *AUDIO_ARGS, str(tmp))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return keep(mp4_name(rel), video_copied=copy, source_fps=info.fps)


def detect_shots(source: Path) -> list[tuple[int, int]]:
    """Frame ranges [start, end) of the shots, by PySceneDetect's adaptive detector at the reference's threshold;
    one range covering the whole video when no cut is found."""
    from scenedetect import AdaptiveDetector, detect

    scenes = detect(str(source), AdaptiveDetector(adaptive_threshold=SHOT_DETECTOR_THRESHOLD))
    ranges = [(start.frame_num, end.frame_num) for start, end in scenes]
    if not ranges:
        ranges = [(0, media.probe(source).num_frames)]
    return ranges


def _publish(tmp_folder: Path, names: list[tuple[str, str]], out_folder: Path) -> None:
    """Move finished pieces ``(tmp name, rel)`` from ``tmp_folder`` into place, each atomically."""
    for tmp_name, rel in names:
        dest = out_folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_folder / tmp_name, dest)


def _tmp_folder(out_folder: Path) -> Path:
    out_folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out_folder))


def shots(source: Path, rel: str, out_folder: Path, options, models) -> Outcome:
    """Stage 3: split at the detected cuts into ``<name>_shot_001.mp4`` ... (re-encoded, keyframe every 5 s)."""
    ranges = detect_shots(source)
    stem = stem_of(rel)
    work = _tmp_folder(out_folder)
    try:
        names = []
        for number, (start, end) in enumerate(ranges, start=1):
            name = f"{number:03d}.mp4"
            run_ffmpeg("-ss", f"{start / media.VIDEO_FPS:.6f}", "-i", str(source),
                       "-t", f"{(end - start) / media.VIDEO_FPS:.6f}", "-frames:v", str(end - start),
                       "-map", "0:v:0", "-map", "0:a:0", "-c:v", "libx264", "-preset", SHOT_PRESET,
                       "-crf", str(media.H264_CRF), "-pix_fmt", "yuv420p",
                       "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT_SECONDS})",
                       *AUDIO_ARGS, str(work / name))  # fmt: skip
            names.append((name, f"{stem}_shot_{number:03d}.mp4"))
        _publish(work, names, out_folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Outcome(outputs=[rel_out for _, rel_out in names], metrics={"cuts": [start for start, _ in ranges[1:]]})


def segment(source: Path, rel: str, out_folder: Path, options, models) -> Outcome:
    """Stage 4: pieces of 5 s by stream copy (``-f segment -segment_time 5``, as the reference) named
    ``<name>_000.mp4`` ...; pieces under ``MIN_CLIP_FRAMES`` frames are dropped."""
    stem = stem_of(rel)
    work = _tmp_folder(out_folder)
    try:
        run_ffmpeg("-i", str(source), "-map", "0", "-c", "copy", "-f", "segment", "-segment_time", str(SEGMENT_SECONDS),
                   "-reset_timestamps", "1", str(work / "%03d.mp4"))  # fmt: skip
        kept, dropped, frames = [], {}, []
        for piece in sorted(work.glob("*.mp4")):
            count = media.probe(piece).num_frames
            frames.append(count)
            reason = piece_decision(count)
            if reason is None:
                kept.append((piece.name, f"{stem}_{piece.stem}.mp4"))
            else:
                dropped[reason] = dropped.get(reason, 0) + 1
        _publish(work, kept, out_folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    outcome = Outcome(outputs=[r for _, r in kept], pieces_dropped=dropped, metrics={"frames": frames})
    if not kept:
        outcome.dropped, outcome.pieces_dropped = next(iter(dropped), "no pieces"), {}
        outcome.detail = f"piece lengths in frames: {frames}"
    return outcome
