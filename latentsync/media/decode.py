"""Reading pictures: a video's frames at 25 fps (or its own rate) streamed in chunks through ffmpeg, exact
seeking, truncation checks, and still images. Part of :mod:`latentsync.media`, which re-exports it."""

from __future__ import annotations

import math
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from latentsync.errors import InputError
from latentsync.media.probe import (
    VIDEO_FPS,
    MediaInfo,
    _tail,
    _tool,
    check_video,
    logger,
    probe,
)

DEFAULT_CHUNK_FRAMES = 64  # frames per chunk when streaming (64 × 1080p RGB ≈ 400 MB; callers pick smaller)
# A read that ends this far short of the frames the stream's duration promises means a truncated file (container
# durations are often a frame or two off, and a track may end a little before the container, so be generous).
TRUNCATION_TOLERANCE_SECONDS = 1.0
TRUNCATION_TOLERANCE_FRACTION = 0.1
# Seeking with -ss starts this much before the first wanted frame, so that the frame shown at that 25 fps slot
# (the last source frame at or before it) is decoded too; exact unless a source frame lasts longer than this.
SEEK_MARGIN_SECONDS = 1.0
# Demuxers whose -ss lands on a keyframe at or before the target (they have an index). Others (MPEG-TS/PS, raw
# streams) may land mid-GOP, where decoding yields nothing or errors, so there we decode from the start instead.
SEEKABLE_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"})


def _require_video(path: str | os.PathLike) -> MediaInfo:
    return check_video(probe(path))


def _first_error_line(stderr: bytes) -> str:
    """ffmpeg's first complaint, without the "@ 0x55d0..." object addresses that mean nothing to a person."""
    for line in stderr.decode("utf-8", "replace").splitlines():
        if line.strip():
            return re.sub(r" @ 0x[0-9a-f]+\]", "]", line.strip())
    return ""


def _video_command(path: str | os.PathLike, info: MediaInfo, start: int, count: int | None,
                   fps: Fraction | int = VIDEO_FPS) -> list[str]:  # fmt: skip
    """The ffmpeg command that writes frames ``start, start + 1...`` of the ``fps`` timeline (25 fps unless asked
    otherwise) as raw RGB to stdout.

    The 25 fps grid must not depend on where decoding starts. The ``fps`` filter rounds every timestamp to a slot
    counted from its ``start_time``, so we keep the original timestamps (``-copyts``) and anchor the grid at the
    file's first timestamp in every read (slot 0 is the file's start, so a picture that starts after the sound is
    padded with its first frame and stays in sync with it). A seek (``-ss``, a margin before the wanted frame) then
    only changes which frames reach the filter, which pads the slots before the first of them with it, and ``trim``
    drops the first ``start`` slots inside ffmpeg (cheap: padded slots are references, never converted to RGB).
    Containers without a seek index, and streams without timestamps, are decoded from the start (slower, equally
    exact: the same frames go through the same filter).
    """
    cmd = [_tool("ffmpeg"), "-nostdin", "-v", "error"]
    fps = Fraction(fps)
    vf = f"fps={fps.numerator}/{fps.denominator}"
    if info.video_start is not None:
        cmd += ["-copyts"]
        vf += f":start_time={info.start_time:.6f}"
        seek = float(start / fps) - SEEK_MARGIN_SECONDS  # -ss counts from the file's start, as the grid does
        if start and seek > 0 and info.format_name in SEEKABLE_FORMATS:
            cmd += ["-ss", f"{seek:.6f}"]
    if start:
        vf += f",trim=start_frame={start}"
    cmd += ["-i", str(path), "-map", "0:v:0", "-vf", vf, "-pix_fmt", "rgb24", "-f", "rawvideo"]
    if count is not None:
        cmd += ["-frames:v", str(count)]
    return cmd + ["-"]


def iter_video_frames(
    path: str | os.PathLike,
    chunk_size: int = DEFAULT_CHUNK_FRAMES,
    *,
    start: int = 0,
    count: int | None = None,
    info: MediaInfo | None = None,
    fps: Fraction | int = VIDEO_FPS,
) -> Iterator[np.ndarray]:
    """Yield the video as chunks of RGB uint8 frames ``(n, H, W, 3)`` resampled to a constant 25 fps (or ``fps``:
    a constant-rate video read at its own rate, :func:`native_fps`, yields exactly its own frames).

    Frames are dropped or duplicated by timestamp (ffmpeg's ``fps`` filter) and rotation metadata is applied, so a
    phone video comes out upright. ``start``/``count`` select frames ``[start, start + count)`` of the 25 fps
    timeline: exactly those of a full read for constant-frame-rate files of any rate and start time, and for
    variable-rate ones unless a single source frame lasts longer than ``SEEK_MARGIN_SECONDS`` (in MPEG-TS and
    other containers without a seek index, ``start`` decodes from the beginning). ``count=0`` yields nothing.
    At most one chunk is held in memory.

    Raises :class:`InputError` for unreadable files, still images, videos that decode to no frames, and, once
    the stream ends, for decoding errors that ffmpeg reports (it exits 0 on corrupt data and returns damaged
    frames) and for files that end far short of the length they declare (truncated uploads).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if start < 0 or (count is not None and count < 0):
        raise ValueError(f"start and count must be >= 0, got start={start}, count={count}")
    info = check_video(info or probe(path))
    if count == 0:
        return
    name, width, height = info.path.name, info.width, info.height
    frame_bytes = width * height * 3
    with tempfile.TemporaryFile() as stderr_file:
        cmd = _video_command(path, info, start, count, fps)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr_file, bufsize=frame_bytes)
        yielded = 0
        try:
            while True:
                buf = proc.stdout.read(frame_bytes * chunk_size)
                n = len(buf) // frame_bytes
                if n:
                    yield np.frombuffer(buf[: n * frame_bytes], np.uint8).reshape(n, height, width, 3)
                    yielded += n
                if len(buf) < frame_bytes * chunk_size:
                    break
            returncode = proc.wait()
        finally:
            if proc.poll() is None:  # the consumer stopped early
                proc.kill()
                proc.wait()
            proc.stdout.close()
        stderr_file.seek(0)
        stderr = stderr_file.read()
    if yielded == 0 and start == 0 and (returncode == 0 or b"after EOF" in stderr):
        # ffmpeg's "Cannot determine format of input stream 0:0 after EOF": the decoder never produced a picture.
        logger.info("no video frames decoded from %s: %s", path, _tail(stderr))
        raise InputError(f"{name} contains no decodable video frames; please upload a video that plays.")
    if returncode != 0:
        logger.info("ffmpeg failed to decode %s: %s", path, _tail(stderr))
        raise InputError(
            f"Could not decode the video in {name}: it is corrupt or uses a codec that is not supported. "
            "Please re-export it as an MP4 (H.264) and try again."
        )
    if stderr.strip():
        logger.info("errors while decoding %s, the first: %s", path, _first_error_line(stderr))
        raise InputError(
            f"{name} looks truncated or corrupt: parts of its video could not be decoded. "
            "Please re-export or re-upload the complete video."
        )
    rate = float(fps)
    expected, reached = info.frames_at(fps), start + yielded
    tolerance = max(TRUNCATION_TOLERANCE_SECONDS * rate, TRUNCATION_TOLERANCE_FRACTION * expected)
    if (count is None or yielded < count) and expected - reached > tolerance:
        raise InputError(
            f"{name} looks truncated or corrupt: it declares {expected / rate:.2f} s of video but only "
            f"{reached / rate:.2f} s decode. Please upload the complete file."
        )


def read_image(path: str | os.PathLike, info: MediaInfo | None = None) -> np.ndarray:
    """A still image (PNG, JPEG, WebP...) as one ``(H, W, 3)`` uint8 RGB frame; :class:`InputError` if it has no
    picture or cannot be decoded."""
    info = info or probe(path)
    name = info.path.name
    if not info.has_video or info.width <= 0 or info.height <= 0:
        raise InputError(f"{name} is not an image or a video: it holds no picture. Please upload a photo or a video of a face.")
    cmd = [_tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-frames:v", "1",
           "-pix_fmt", "rgb24", "-f", "rawvideo", "-"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True)
    frame_bytes = info.width * info.height * 3
    if proc.returncode != 0 or len(proc.stdout) < frame_bytes or proc.stderr.strip():
        logger.info("ffmpeg could not decode the image %s: %s", path, _tail(proc.stderr))
        raise InputError(f"{name} could not be decoded as an image: it is damaged or incomplete. Please re-export it as PNG or JPEG.")
    return np.frombuffer(proc.stdout[:frame_bytes], np.uint8).reshape(info.height, info.width, 3).copy()


def read_video_frames(path: str | os.PathLike, *, max_frames: int | None = None) -> np.ndarray:
    """All frames of a short clip as one ``(N, H, W, 3)`` uint8 RGB array at 25 fps (see :func:`iter_video_frames`).

    ``max_frames=0`` gives an empty ``(0, H, W, 3)`` array (the file is still checked).
    """
    info = _require_video(path)
    chunks = list(iter_video_frames(path, count=max_frames, info=info))
    if not chunks:
        return np.empty((0, info.height, info.width, 3), np.uint8)
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def frames_for_duration(seconds: float, fps: int | Fraction = VIDEO_FPS) -> int:
    """Video frames needed to cover ``seconds`` of audio: ceil, so the picture never ends before the sound.

    A tiny tolerance absorbs float noise (2.0 s × 25 must be 50, not 51).
    """
    return max(1, math.ceil(seconds * float(fps) - 1e-6))
