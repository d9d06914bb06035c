"""Video and audio I/O at the model's rates: 25 fps RGB frames in chunks, 16 kHz mono float32 audio, H.264/AAC MP4 out.

Why the ffmpeg command-line tools rather than a Python binding such as PyAV (whose current wheels would do: they
bundle their own FFmpeg, configured with ``--enable-gpl --enable-libx264``): on Spaces the tools come from Debian's
``ffmpeg`` package (listed in ``packages.txt``), so there is no compiled extension to keep in step with the Python
version and no second copy of FFmpeg beside the system's, and the binaries we call are the ones a person can run to
reproduce a problem. The CLI also does by default what we need: it decodes every container and codec users
upload, applies rotation metadata, resamples the frame rate with the ``fps`` filter (drop/duplicate by timestamp,
the reference behaviour) and encodes with libx264 + the native AAC encoder. Its stderr, at ``-v error``, tells
what went wrong (a corrupt stream shows up there even when ffmpeg exits 0): it goes to the ``latentsync.media`` log,
while the :class:`InputError` a user sees says it in plain words, naming the file by its base name (no paths,
libav addresses or tool output). We stream raw frames through pipes, so memory stays bounded, and call the tools
with argument lists (never a shell). Probing (``probe``, ``MediaInfo``, ``check_video``) lives in
:mod:`latentsync.media_probe` and is re-exported here.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from latentsync.errors import InputError
from latentsync.media_probe import (  # noqa: F401 -- re-exported: media is the one public module for file I/O
    IMAGE_CODECS,
    VIDEO_FPS,
    MediaInfo,
    _tail,
    _tool,
    check_audio,
    check_video,
    logger,
    native_fps,
    probe,
)

SAMPLE_RATE = 16_000  # Whisper's input rate; every waveform in the package is 16 kHz mono float32
DEFAULT_CHUNK_FRAMES = 64  # frames per chunk when streaming (64 × 1080p RGB ≈ 400 MB; callers pick smaller)
H264_CRF = 18  # visually lossless for talking heads; the reference's final mux also uses CRF 18
MAX_CRF = 51  # libx264's 8-bit range is 0 (lossless) to 51
AAC_BITRATE = "160k"
INT16_SCALE = 32768.0  # decoded 16-bit samples / 2**15 = float in [-1, 1), as the reference's Whisper audio loader
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
OUTPUT_PROBE_PREFIX = ".latentsync-write-test-"  # the empty file that proves an output's folder is writable
MAX_AUDIO_CHANNELS = 8  # an (n, c) audio array with more "channels" than this is surely (channels, n) by mistake


# ----------------------------------------------------------------------------------------------------------------
# Reading


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


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of any container (wav, mp3, m4a, flac, ogg, a video's track) to mono float32.

    Decoded as the reference decodes it (README §4.2): ffmpeg converts the rate and writes 16-bit mono (``s16le``),
    and the samples are divided by 32768. For integer output ffmpeg's downmix is normalised, so stereo becomes the
    mean of the channels rounded to int16; with float output it is not (stereo would come out √2 louder, and
    Whisper's log-mel normalisation is not gain-invariant). Silence is valid audio; a file without an audio stream
    or with zero samples raises :class:`InputError`.
    """
    info = check_audio(probe(path))
    cmd = [_tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-vn", "-ac", "1",
           "-ar", str(sample_rate), "-f", "s16le", "-acodec", "pcm_s16le", "-"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        logger.info("ffmpeg failed to decode the audio of %s: %s", path, _tail(proc.stderr))
        raise InputError(
            f"Could not decode the audio in {info.path.name}: it is corrupt or uses a codec that is not "
            "supported. Please convert it to WAV or MP3 and try again."
        )
    audio = np.frombuffer(proc.stdout, "<i2").astype(np.float32) / INT16_SCALE
    if audio.size == 0:
        raise InputError(f"The audio in {info.path.name} is empty (0 samples).")
    return audio


# Speech whose peak stays below -50 dBFS carries nothing for the lips to follow (16-bit dither sits near -90 dBFS):
# the data toolchain drops such clips, and the pipeline's summary says so.
SILENCE_DBFS = -50
SILENCE_PEAK = 10 ** (SILENCE_DBFS / 20)


def is_silent(waveform: np.ndarray) -> bool:
    """No sample reaches -50 dBFS (float audio in [-1, 1]); empty audio counts as silent."""
    waveform = np.asarray(waveform)
    return waveform.size == 0 or float(np.abs(waveform).max()) < SILENCE_PEAK


# ----------------------------------------------------------------------------------------------------------------
# Writing


def _audio_samples(audio: np.ndarray) -> np.ndarray:
    """``audio`` as float32 ``(samples, channels)``; a 1-D array is mono."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.ndim != 2 or not 1 <= audio.shape[1] <= MAX_AUDIO_CHANNELS:
        raise ValueError(
            f"audio must be mono (samples,) or (samples, channels) with at most {MAX_AUDIO_CHANNELS} channels, "
            f"got shape {audio.shape}"
        )
    return audio


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float audio in [-1, 1], mono ``(n,)`` or ``(n, channels)``, as 16-bit PCM WAV (the standard library is
    enough for this). Zero samples give a valid, empty WAV."""
    samples = _audio_samples(audio)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")  # rows are interleaved frames
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(samples.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())


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


def frames_for_duration(seconds: float, fps: int | Fraction = VIDEO_FPS) -> int:
    """Video frames needed to cover ``seconds`` of audio: ceil, so the picture never ends before the sound.

    A tiny tolerance absorbs float noise (2.0 s × 25 must be 50, not 51).
    """
    return max(1, math.ceil(seconds * float(fps) - 1e-6))
