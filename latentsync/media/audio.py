"""Sound: any container's first audio track decoded to 16 kHz mono float32 as the reference does, the
silence rule, and 16-bit WAV writing. Part of :mod:`latentsync.media`, which re-exports it."""

from __future__ import annotations

import os
import subprocess
import wave

import numpy as np

from latentsync.errors import InputError
from latentsync.media.probe import (
    _tail,
    _tool,
    check_audio,
    logger,
    probe,
)

SAMPLE_RATE = 16_000  # Whisper's input rate; every waveform in the package is 16 kHz mono float32
INT16_SCALE = 32768.0  # decoded 16-bit samples / 2**15 = float in [-1, 1), as the reference's Whisper audio loader
MAX_AUDIO_CHANNELS = 8  # an (n, c) audio array with more "channels" than this is surely (channels, n) by mistake


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
