"""Probing media files with ``ffprobe``: what a file holds (:class:`MediaInfo`) and whether it is a video that can
be read frame by frame (:func:`check_video`). Part of :mod:`latentsync.media`, which re-exports everything here;
import from there.

What the tools say goes to the ``latentsync.media`` log (server side), never into an :class:`InputError`: their
messages hold the file's absolute path (in the app, the server's upload folder) and libav object addresses
("@ 0x55d0..."), and mean little to a person. InputErrors name the file by its base name, as the user gave it,
in plain words.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from latentsync.errors import InputError

VIDEO_FPS = 25  # the model was trained on 25 fps video; every frame index in the package is at this rate
_STDERR_TAIL = 1500  # characters of a tool's stderr kept in a log line or a RuntimeError
# A single picture that ffmpeg will happily "play": image demuxers, or one frame of an image codec in any container.
IMAGE_CODECS = frozenset({"png", "mjpeg", "jpeg2000", "jpegls", "jpegxl", "webp", "gif", "bmp", "tiff", "qoi"})

logger = logging.getLogger("latentsync.media")  # one log for all of latentsync.media


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"`{name}` was not found on PATH. Install ffmpeg (Debian/Ubuntu: `apt-get install ffmpeg`; "
            "Hugging Face Spaces: list `ffmpeg` in packages.txt)."
        )
    return path


def _tail(stderr: bytes | str) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    return text.strip()[-_STDERR_TAIL:]


# ----------------------------------------------------------------------------------------------------------------
# Probing


@dataclass(frozen=True)
class MediaInfo:
    """What ``ffprobe`` says about a file. Sizes are as displayed, i.e. after applying the rotation."""

    path: Path
    duration: float  # seconds (container duration, else the longest stream)
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    rotation: int = 0  # degrees counter-clockwise in {0, 90, 180, 270}, as stored in the display matrix
    fps: float = 0.0  # average frame rate
    variable_fps: bool = False  # r_frame_rate (the stream's base rate) differs from the average rate
    num_frames: int = 0  # frames in the file (counted by the container when it says so, else estimated)
    video_codec: str = ""
    audio_codec: str = ""
    audio_sample_rate: int = 0
    audio_channels: int = 0
    audio_duration: float = 0.0  # seconds of the audio stream as the container declares it (what players show)
    video_duration: float = 0.0  # seconds of the video stream (a file's audio may run longer than its picture)
    format_name: str = ""  # ffprobe's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" or "mpegts"
    start_time: float = 0.0  # seconds: the file's first timestamp (MPEG-TS often starts at 1.4 s); -ss counts from here
    video_start: float | None = None  # seconds: the video stream's first timestamp (None: raw streams have none)
    still_image: bool = False  # a picture (PNG, JPEG...), whatever the file is called: not a video
    empty_video: bool = False  # the container declares a video stream with no frames at all
    frame_rate: str = ""  # ffprobe's exact average rate, e.g. "30000/1001" (the stream's base rate if none)

    @property
    def frames_at_model_fps(self) -> int:
        """How many frames :func:`iter_video_frames` yields: the video stream's duration sampled at 25 fps."""
        return self.frames_at(VIDEO_FPS)

    def frames_at(self, fps: Fraction | int) -> int:
        """How many frames a read at ``fps`` yields: the video stream's duration sampled at that rate."""
        return round((self.video_duration or self.duration) * float(fps))


MAX_NATIVE_FPS = 120  # a higher "native" rate is a timestamp artefact (e.g. 90000 in some VFR files), not video
NATIVE_FPS_DENOMINATOR = 1001  # NTSC rates are n·1000/1001; any other rate is an integer or close to one


def native_fps(info: MediaInfo) -> Fraction:
    """The video's own frame rate as an exact fraction (30000/1001 for "29.97"): the average rate, which for a
    constant-rate file is its rate. Variable-rate video is read at its average rate (frames dropped or repeated by
    timestamp, as at 25 fps). Rates above ``MAX_NATIVE_FPS`` or unknown raise :class:`InputError`."""
    rate = _ratio(info.frame_rate) if info.frame_rate else info.fps
    if not 0 < rate <= MAX_NATIVE_FPS:
        raise InputError(
            f"{info.path.name}: its frame rate ({rate:g} fps) cannot be used as the output rate "
            f"(at most {MAX_NATIVE_FPS} fps); leave native fps off to get 25 fps."
        )
    num, _, den = info.frame_rate.partition("/")
    try:
        exact = Fraction(int(num), int(den or 1))
    except (ValueError, ZeroDivisionError):
        exact = Fraction(rate)
    return exact.limit_denominator(NATIVE_FPS_DENOMINATOR)


def _ratio(text: str | None) -> float:
    if not text or text in ("0/0", "N/A"):
        return 0.0
    num, _, den = text.partition("/")
    return float(num) / float(den or 1) if float(den or 1) else 0.0


def _seconds(text: str | None) -> float | None:
    """A duration or timestamp field of ffprobe's JSON, or None when it is absent."""
    return float(text) if text not in (None, "", "N/A") else None


def _tag_seconds(tags: dict) -> float | None:
    """Matroska's per-track ``DURATION`` tag ("00:00:04.000000000"), the only per-stream length mkv/webm give."""
    text = next((v for k, v in tags.items() if k.upper() == "DURATION"), None)
    try:
        hours, minutes, seconds = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (AttributeError, ValueError):
        return None


def _rotation(stream: dict) -> int:
    angle = 0.0
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            angle = float(side["rotation"])
    if not angle and "rotate" in stream.get("tags", {}):
        angle = -float(stream["tags"]["rotate"])  # the legacy tag is clockwise
    return int(round(angle)) % 360


def _count_packets(path: Path, stream_index: int) -> int | None:
    """Packets of one stream, by demuxing the whole file (fast: nothing is decoded); None if ffprobe cannot."""
    cmd = [_tool("ffprobe"), "-v", "error", "-select_streams", str(stream_index), "-count_packets",
           "-show_entries", "stream=nb_read_packets", "-print_format", "json", str(path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True)
    try:
        return int(json.loads(proc.stdout)["streams"][0]["nb_read_packets"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describe a media file; raises :class:`InputError` when it is missing or not a readable media file.

    A file can be described and still be unusable as a video (a still image, an empty video stream):
    :func:`check_video` says so, and every reader here calls it.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"File not found: {path.name}")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty (0 bytes).")
    cmd = [_tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        logger.info("ffprobe could not read %s: %s", path, _tail(proc.stderr))
        raise InputError(
            f"{path.name} is not a readable video or audio file: it may be damaged or incomplete, or not a media "
            "file at all. Please upload a common video or audio format (e.g. MP4, MOV, WAV, MP3)."
        )
    data = json.loads(proc.stdout or b"{}")
    streams = data.get("streams", [])
    video = next(
        (s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise InputError(f"{path.name} contains no video or audio stream.")
    fmt = data.get("format", {})
    durations = [d for d in (_seconds(s.get("duration")) for s in streams) if d is not None]
    fmt_duration = _seconds(fmt.get("duration"))
    duration = fmt_duration if fmt_duration is not None else max(durations, default=0.0)
    format_name = fmt.get("format_name", "")

    info: dict = dict(path=path, duration=duration, has_video=video is not None, has_audio=audio is not None,
                      format_name=format_name, start_time=_seconds(fmt.get("start_time")) or 0.0)  # fmt: skip
    if video is not None:
        rotation = _rotation(video)
        width, height = int(video.get("width", 0)), int(video.get("height", 0))
        if rotation in (90, 270):
            width, height = height, width
        avg, base = _ratio(video.get("avg_frame_rate")), _ratio(video.get("r_frame_rate"))
        declared_duration = _seconds(video.get("duration"))
        if declared_duration is None:
            declared_duration = _tag_seconds(video.get("tags", {}))
        video_duration = declared_duration if declared_duration is not None else duration
        nb = video.get("nb_frames")
        num_frames = int(nb) if nb not in (None, "", "N/A") else None
        if not avg and video_duration > 0:
            # Matroska gives no average rate for variable-rate video: count the frames (packets) instead.
            num_frames = num_frames if num_frames is not None else _count_packets(path, int(video["index"]))
            avg = num_frames / video_duration if num_frames else 0.0
        codec = video.get("codec_name", "unknown")
        info.update(
            width=width,
            height=height,
            rotation=rotation,
            fps=avg or base,
            variable_fps=bool(avg and base and abs(avg - base) > 0.01),
            num_frames=num_frames if num_frames is not None else round(video_duration * (avg or base)),
            video_codec=codec,
            video_duration=video_duration,
            video_start=_seconds(video.get("start_time")),
            still_image=format_name == "image2" or format_name.endswith("_pipe") or (codec in IMAGE_CODECS and nb == "1"),
            empty_video=num_frames == 0 or (num_frames is None and declared_duration == 0),
            frame_rate=(video.get("avg_frame_rate") if _ratio(video.get("avg_frame_rate")) else "")
            or (f"{avg}" if avg else video.get("r_frame_rate", "")),
        )
    if audio is not None:
        info.update(
            audio_codec=audio.get("codec_name", "unknown"),
            audio_sample_rate=int(audio.get("sample_rate", 0)),
            audio_channels=int(audio.get("channels", 0)),
            audio_duration=_seconds(audio.get("duration")) or _tag_seconds(audio.get("tags", {})) or duration,
        )
    return MediaInfo(**info)


def check_video(info: MediaInfo) -> MediaInfo:
    """Raise :class:`InputError` unless ``info`` describes a video that can be read frame by frame; returns it.

    Catches what :func:`probe` describes without complaint: no video stream, a still image (a PNG or JPEG, perhaps
    renamed ``.mp4``), a video stream without a frame size or without any frames.
    """
    name = info.path.name
    if not info.has_video:
        raise InputError(f"{name} has no video stream; please upload a video of a face.")
    if info.still_image:
        raise InputError(f"{name} is a still image, not a video; please upload a video of a face (e.g. an MP4).")
    if info.width <= 0 or info.height <= 0:
        raise InputError(f"{name}: the video stream has no frame size (unsupported or corrupt codec).")
    if info.empty_video:
        raise InputError(f"{name} contains no video frames (its video stream is empty); please upload a video that plays.")
    return info


def check_audio(info: MediaInfo, hint: str = "") -> MediaInfo:
    """Raise :class:`InputError` unless ``info`` has an audio track (the speech); returns it. ``hint`` is appended
    to the message."""
    if not info.has_audio:
        raise InputError(
            f"{info.path.name} has no audio track; please provide speech audio (or a video with sound).{hint}"
        )
    return info
