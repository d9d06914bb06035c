"""Video and audio I/O at the model's rates: 25 fps RGB frames in chunks, 16 kHz mono float32 audio, H.264/AAC MP4 out.

Why the ffmpeg command-line tools (Debian's ``ffmpeg`` package, listed in ``packages.txt`` for Spaces) rather than a
binding: they decode every container and codec users upload, apply rotation metadata by default, resample frame rate
with the ``fps`` filter (drop/duplicate by timestamp, the reference behaviour) and ship libx264 + the native AAC
encoder, while PyAV's wheels are LGPL builds without libx264. We stream raw frames through pipes, so memory stays
bounded, and call the tools with argument lists (never a shell), putting their stderr in any error we raise.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentsync.errors import InputError

VIDEO_FPS = 25  # the model was trained on 25 fps video; every frame index in the package is at this rate
SAMPLE_RATE = 16_000  # Whisper's input rate; every waveform in the package is 16 kHz mono float32
DEFAULT_CHUNK_FRAMES = 64  # frames per chunk when streaming (64 × 1080p RGB ≈ 400 MB; callers pick smaller)
H264_CRF = 18  # visually lossless for talking heads; the reference's final mux also uses CRF 18
AAC_BITRATE = "160k"
_STDERR_TAIL = 1500  # characters of a tool's stderr kept in an error message


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

    @property
    def frames_at_model_fps(self) -> int:
        """How many frames :func:`iter_video_frames` yields: the video stream's duration sampled at 25 fps."""
        return round((self.video_duration or self.duration) * VIDEO_FPS)


def _ratio(text: str | None) -> float:
    if not text or text in ("0/0", "N/A"):
        return 0.0
    num, _, den = text.partition("/")
    return float(num) / float(den or 1) if float(den or 1) else 0.0


def _rotation(stream: dict) -> int:
    angle = 0.0
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            angle = float(side["rotation"])
    if not angle and "rotate" in stream.get("tags", {}):
        angle = -float(stream["tags"]["rotate"])  # the legacy tag is clockwise
    return int(round(angle)) % 360


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describe a media file; raises :class:`InputError` when it is missing or not a readable media file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"File not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty (0 bytes).")
    cmd = [_tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise InputError(f"{path.name} is not a readable video or audio file ({_tail(proc.stderr) or 'ffprobe failed'}).")
    data = json.loads(proc.stdout or b"{}")
    streams = data.get("streams", [])
    video = next(
        (s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise InputError(f"{path.name} contains no video or audio stream.")
    durations = [float(s["duration"]) for s in streams if s.get("duration") not in (None, "N/A")]
    fmt_duration = data.get("format", {}).get("duration")
    duration = float(fmt_duration) if fmt_duration not in (None, "N/A") else max(durations, default=0.0)

    info: dict = dict(path=path, duration=duration, has_video=video is not None, has_audio=audio is not None)
    if video is not None:
        rotation = _rotation(video)
        width, height = int(video.get("width", 0)), int(video.get("height", 0))
        if rotation in (90, 270):
            width, height = height, width
        avg, base = _ratio(video.get("avg_frame_rate")), _ratio(video.get("r_frame_rate"))
        video_duration = float(video["duration"]) if video.get("duration") not in (None, "N/A") else duration
        nb = video.get("nb_frames")
        info.update(
            width=width,
            height=height,
            rotation=rotation,
            fps=avg or base,
            variable_fps=bool(avg and base and abs(avg - base) > 0.01),
            num_frames=int(nb) if nb and nb != "N/A" else round(video_duration * (avg or base)),
            video_codec=video.get("codec_name", "unknown"),
            video_duration=video_duration,
        )
    if audio is not None:
        info.update(
            audio_codec=audio.get("codec_name", "unknown"),
            audio_sample_rate=int(audio.get("sample_rate", 0)),
            audio_channels=int(audio.get("channels", 0)),
            audio_duration=float(audio["duration"]) if audio.get("duration") not in (None, "N/A") else duration,
        )
    return MediaInfo(**info)


# ----------------------------------------------------------------------------------------------------------------
# Reading


def _require_video(path: str | os.PathLike) -> MediaInfo:
    info = probe(path)
    if not info.has_video:
        raise InputError(f"{info.path.name} has no video stream; please upload a video of a face.")
    if info.width <= 0 or info.height <= 0:
        raise InputError(f"{info.path.name}: the video stream has no frame size (unsupported or corrupt codec).")
    return info


def iter_video_frames(
    path: str | os.PathLike,
    chunk_size: int = DEFAULT_CHUNK_FRAMES,
    *,
    start: int = 0,
    count: int | None = None,
    info: MediaInfo | None = None,
) -> Iterator[np.ndarray]:
    """Yield the video as chunks of RGB uint8 frames ``(n, H, W, 3)`` resampled to a constant 25 fps.

    Frames are dropped or duplicated by timestamp (ffmpeg's ``fps`` filter) and rotation metadata is applied, so a
    phone video comes out upright. ``start``/``count`` select frames ``[start, start + count)`` of the 25 fps
    timeline (exact for constant-frame-rate files such as the ones :class:`VideoWriter` writes). At most one chunk is
    held in memory. Raises :class:`InputError` for unreadable files and videos that decode to no frames.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    info = info or _require_video(path)
    width, height = info.width, info.height
    cmd = [_tool("ffmpeg"), "-nostdin", "-v", "error"]
    if start:
        cmd += ["-ss", f"{start / VIDEO_FPS:.6f}"]
    cmd += ["-i", str(path), "-map", "0:v:0", "-vf", f"fps={VIDEO_FPS}", "-pix_fmt", "rgb24", "-f", "rawvideo"]
    if count is not None:
        cmd += ["-frames:v", str(count)]
    cmd += ["-"]
    frame_bytes = width * height * 3
    with tempfile.TemporaryFile() as stderr_file:
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
    if returncode != 0:
        raise InputError(f"Could not decode the video in {info.path.name} (corrupt or unsupported codec): {_tail(stderr)}")
    if yielded == 0 and start == 0:
        raise InputError(f"{info.path.name} contains no decodable video frames.")


def read_video_frames(path: str | os.PathLike, *, max_frames: int | None = None) -> np.ndarray:
    """All frames of a short clip as one ``(N, H, W, 3)`` uint8 RGB array at 25 fps (see :func:`iter_video_frames`)."""
    chunks = list(iter_video_frames(path, count=max_frames))
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of any container (wav, mp3, m4a, flac, ogg, a video's track) to mono float32.

    Channels are averaged and the rate converted by ffmpeg. Silence is valid audio; a file without an audio stream
    or with zero samples raises :class:`InputError`.
    """
    info = probe(path)
    if not info.has_audio:
        raise InputError(f"{info.path.name} has no audio track; please provide speech audio (or a video with sound).")
    cmd = [_tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-vn", "-ac", "1",
           "-ar", str(sample_rate), "-f", "f32le", "-acodec", "pcm_f32le", "-"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise InputError(f"Could not decode the audio in {info.path.name} (corrupt or unsupported codec): {_tail(proc.stderr)}")
    audio = np.frombuffer(proc.stdout, np.float32).copy()
    if audio.size == 0:
        raise InputError(f"The audio in {info.path.name} is empty (0 samples).")
    return audio


# ----------------------------------------------------------------------------------------------------------------
# Writing


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono float audio in [-1, 1] as 16-bit PCM WAV (the standard library is enough for this)."""
    pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())


class VideoWriter:
    """Stream RGB frames into an H.264 (yuv420p) + AAC MP4, atomically.

    Frames go to ffmpeg through a pipe; the file is written as a hidden temporary next to ``path`` and renamed over
    ``path`` only when :meth:`close` succeeds, so a crash or an exception inside ``with`` never leaves a partial
    output. Odd frame sizes (yuv420p needs even ones) are padded by repeating the last row/column.

    ``audio`` is a path to any media file with an audio track (muxed as AAC) or a mono float32 array at
    ``sample_rate``; ``None`` writes a video-only file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        width: int,
        height: int,
        fps: int = VIDEO_FPS,
        audio: str | os.PathLike | np.ndarray | None = None,
        sample_rate: int = SAMPLE_RATE,
        crf: int = H264_CRF,
    ):
        if width < 1 or height < 1:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height = width, height
        self.out_width, self.out_height = width + width % 2, height + height % 2
        self.frames_written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._workdir = Path(tempfile.mkdtemp(prefix=f".{self.path.stem}.", dir=self.path.parent))
        self._tmp_path = self._workdir / f"partial{self.path.suffix or '.mp4'}"
        cmd = [_tool("ffmpeg"), "-nostdin", "-v", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.out_width}x{self.out_height}",
               "-framerate", str(fps), "-i", "-"]  # fmt: skip
        if isinstance(audio, np.ndarray):
            wav_path = self._workdir / "audio.wav"
            write_wav(wav_path, audio, sample_rate)
            audio = wav_path
        if audio is not None:
            cmd += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", AAC_BITRATE]
        cmd += ["-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", str(self._tmp_path)]  # fmt: skip
        self._stderr = open(self._workdir / "ffmpeg.log", "w+b")
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self._stderr)
        self._closed = False

    def write(self, frames: np.ndarray) -> None:
        """Append ``(n, H, W, 3)`` (or one ``(H, W, 3)``) uint8 RGB frames."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(
                f"frames must be uint8 of shape (n, {self.height}, {self.width}, 3), got {frames.dtype} {frames.shape}"
            )
        if (self.out_width, self.out_height) != (self.width, self.height):
            pad = ((0, 0), (0, self.out_height - self.height), (0, self.out_width - self.width), (0, 0))
            frames = np.pad(frames, pad, mode="edge")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frames).tobytes())
        except BrokenPipeError:
            self._fail("ffmpeg stopped accepting frames")
        self.frames_written += len(frames)

    def _fail(self, what: str) -> None:
        self._stderr.seek(0)
        message = f"{what}: {_tail(self._stderr.read())}"
        self.abort()
        raise RuntimeError(message)

    def close(self) -> Path:
        """Finish encoding and move the file into place; returns the output path."""
        if self._closed:
            return self.path
        if self.frames_written == 0:
            self.abort()
            raise ValueError("no frames were written")
        self._proc.stdin.close()
        if self._proc.wait() != 0:
            self._fail(f"ffmpeg failed to encode {self.path.name}")
        os.replace(self._tmp_path, self.path)
        self._cleanup()
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and delete everything written so far (the final path is never touched)."""
        if self._closed:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        self._cleanup()

    def _cleanup(self) -> None:
        self._closed = True
        self._stderr.close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    *,
    audio: str | os.PathLike | np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    fps: int = VIDEO_FPS,
) -> Path:
    """Write chunks of RGB frames (each ``(n, H, W, 3)`` uint8) and an optional audio track to an MP4, atomically."""
    writer: VideoWriter | None = None
    try:
        for chunk in frames:
            chunk = np.asarray(chunk)
            if chunk.ndim == 3:
                chunk = chunk[None]
            if writer is None:
                writer = VideoWriter(path, width=chunk.shape[2], height=chunk.shape[1], fps=fps, audio=audio,
                                     sample_rate=sample_rate)  # fmt: skip
            writer.write(chunk)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is None:
        raise ValueError("no frames to write")
    return writer.close()


def frames_for_duration(seconds: float, fps: int = VIDEO_FPS) -> int:
    """Video frames needed to cover ``seconds`` of audio: ceil, so the picture never ends before the sound.

    A tiny tolerance absorbs float noise (2.0 s × 25 must be 50, not 51).
    """
    return max(1, math.ceil(seconds * fps - 1e-6))
