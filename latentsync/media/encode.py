"""Writing the result: the output-path check made before any work, and :class:`VideoWriter`, which streams
RGB frames and a sound track into an H.264/AAC MP4 atomically. Part of :mod:`latentsync.media`, which
re-exports it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from latentsync.errors import InputError
from latentsync.media.audio import SAMPLE_RATE, _audio_samples, write_wav
from latentsync.media.probe import (
    VIDEO_FPS,
    _tail,
    _tool,
    probe,
)

H264_CRF = 18  # visually lossless for talking heads; the reference's final mux also uses CRF 18
MAX_CRF = 51  # libx264's 8-bit range is 0 (lossless) to 51
AAC_BITRATE = "160k"
OUTPUT_PROBE_PREFIX = ".latentsync-write-test-"  # the empty file that proves an output's folder is writable


def check_output_path(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                      create_folders: bool = False) -> None:  # fmt: skip
    """Raise :class:`InputError` now, before any work is spent on it, unless ``path`` can become a file.

    Refused: an existing folder; one of ``inputs`` (it would be overwritten while it is read); a missing folder
    (unless ``create_folders``: then the nearest existing ancestor, where the folders would be made, is checked);
    a parent that is a file; a folder where no file can be created, tried for real (permissions, read-only mounts,
    and root, whom ``os.access`` always answers yes). Creates nothing.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(
            f"Cannot write {path}: it is an existing folder (the output is a directory). "
            f"Give a file name, e.g. {path / 'out.mp4'}."
        )
    for source in inputs:
        same_file = path.exists() and Path(source).exists() and os.path.samefile(path, source)
        if same_file or path.resolve() == Path(source).resolve():
            raise InputError(f"Cannot write {path}: it is also an input. Choose another file name so the input is kept.")
    folder = path.parent
    if not folder.exists():
        if not create_folders:
            raise InputError(f"Cannot write {path}: the folder {folder} does not exist. Create it or choose another path.")
        while not folder.exists():
            folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"Cannot write {path}: {folder} is a file, not a folder. Choose another output path.")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=OUTPUT_PROBE_PREFIX):
            pass
    except OSError as err:
        raise InputError(
            f"Cannot write {path}: the folder {folder} is not writable ({err.strerror or err}). Choose another output path."
        ) from err


class VideoWriter:
    """Stream RGB frames into an H.264 (yuv420p) + AAC MP4, atomically.

    Frames go to ffmpeg through a pipe; the file is written as a hidden temporary next to ``path`` and renamed over
    ``path`` only when :meth:`close` succeeds, so a crash or an exception inside ``with`` never leaves a partial
    output. Odd frame sizes (yuv420p needs even ones) are padded by repeating the last row/column.

    ``audio`` is a path to any media file with an audio track (muxed as AAC) or a float32 array at ``sample_rate``,
    mono ``(n,)`` or ``(n, channels)`` (written with its channels); ``None`` writes a video-only file. The output
    path and the audio are checked here, before any frame is encoded: an output that is a folder or lies in a
    missing (unless ``create_folders``) or read-only folder, or an audio file without an audio track, raises
    :class:`InputError`; an empty audio array raises ``ValueError``. An audio file keeps its own sample rate and
    channels (re-encoded once to AAC). ``audio_seconds``: cut the audio, or pad it with silence, to exactly this
    length (the "output follows the video" length mode); None keeps it as it is. ``fps`` may be a fraction
    (``Fraction(30000, 1001)``) and ``crf`` is libx264's constant rate factor (0 lossless ... 51 worst).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        width: int,
        height: int,
        fps: int | Fraction = VIDEO_FPS,
        audio: str | os.PathLike | np.ndarray | None = None,
        sample_rate: int = SAMPLE_RATE,
        crf: int = H264_CRF,
        create_folders: bool = False,
        audio_seconds: float | None = None,
    ):
        if width < 1 or height < 1:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        if not 0 <= int(crf) <= MAX_CRF:
            raise ValueError(f"crf must be from 0 to {MAX_CRF}, got {crf}")
        fps = Fraction(fps)
        self.path = Path(path)
        self.width, self.height = width, height
        self.out_width, self.out_height = width + width % 2, height + height % 2
        self.frames_written = 0
        if isinstance(audio, np.ndarray):
            audio = _audio_samples(audio)
            if len(audio) == 0:
                raise ValueError("the audio array is empty (0 samples); pass audio=None for a video without sound")
        elif audio is not None:
            audio_info = probe(audio)
            if not audio_info.has_audio:
                raise InputError(
                    f"{audio_info.path.name} has no audio track to put in {self.path.name}; "
                    "please provide speech audio (or a video with sound)."
                )
        check_output_path(self.path, create_folders=create_folders)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # only missing when create_folders
            self._workdir = Path(tempfile.mkdtemp(prefix=f".{self.path.stem}.", dir=self.path.parent))
        except OSError as err:
            raise InputError(f"Cannot write {self.path}: {err.strerror or err}. Choose another output path.") from err
        self._tmp_path = self._workdir / f"partial{self.path.suffix or '.mp4'}"
        self._stderr = open(self._workdir / "ffmpeg.log", "w+b")
        try:  # until ffmpeg runs, a failure only has the work folder to remove
            cmd = [_tool("ffmpeg"), "-nostdin", "-v", "error", "-y",
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.out_width}x{self.out_height}",
                   "-framerate", f"{fps.numerator}/{fps.denominator}", "-i", "-"]  # fmt: skip
            if isinstance(audio, np.ndarray):
                wav_path = self._workdir / "audio.wav"
                write_wav(wav_path, audio, sample_rate)
                audio = wav_path
            if audio is not None:
                cmd += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", AAC_BITRATE]
                if audio_seconds is not None:  # silence after the end, then cut: exactly audio_seconds long
                    cmd += ["-af", f"apad=whole_dur={audio_seconds:.6f},atrim=duration={audio_seconds:.6f}"]
            cmd += ["-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(self._tmp_path)]  # fmt: skip
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self._stderr)
        except BaseException:
            self._stderr.close()
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise
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
        try:
            os.replace(self._tmp_path, self.path)
        except OSError as err:  # e.g. a folder appeared at the output path while we encoded
            self._cleanup()
            raise InputError(f"Cannot write {self.path}: {err.strerror or err}. Choose another output path.") from err
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
    fps: int | Fraction = VIDEO_FPS,
    create_folders: bool = False,
) -> Path:
    """Write chunks of RGB frames (each ``(n, H, W, 3)`` uint8) and an optional audio track to an MP4, atomically.

    See :class:`VideoWriter` for ``audio`` and for the checks of the output path.
    """
    check_output_path(path, create_folders=create_folders)  # before the first chunk, which may take long to compute
    writer: VideoWriter | None = None
    try:
        for chunk in frames:
            chunk = np.asarray(chunk)
            if chunk.ndim == 3:
                chunk = chunk[None]
            if writer is None:
                writer = VideoWriter(path, width=chunk.shape[2], height=chunk.shape[1], fps=fps, audio=audio,
                                     sample_rate=sample_rate, create_folders=create_folders)  # fmt: skip
            writer.write(chunk)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is None:
        raise ValueError("no frames to write")
    return writer.close()
