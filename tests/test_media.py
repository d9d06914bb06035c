"""Media I/O round trips with real ffmpeg: frame counts at 25 fps, rotation, audio resampling, MP4 writing, errors."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import wave
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from latentsync import media
from latentsync.errors import InputError

DEMO_VIDEO = Path(__file__).resolve().parents[1] / "assets" / "demo_video.mp4"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


X264_FAST = ("-c:v", "libx264", "-preset", "ultrafast")


def make_clip(path: Path, *, fps: float | str, seconds: float, size: str = "160x120", extra: tuple[str, ...] = (),
              codec: tuple[str, ...] = X264_FAST) -> Path:  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-t", str(seconds), *extra,
           "-pix_fmt", "yuv420p", *codec, str(path))  # fmt: skip
    return path


def make_tone(path: Path, *, rate: int, channels: int, seconds: float, codec: tuple[str, ...] = ()) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}:duration={seconds}",
           "-ac", str(channels), *codec, str(path))  # fmt: skip
    return path


# ------------------------------------------------------------------------------------------------ reading video


def test_30fps_two_seconds_reads_as_50_frames(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", fps=30, seconds=2.0)
    info = media.probe(clip)
    assert (info.fps, info.num_frames, info.width, info.height) == (30.0, 60, 160, 120)
    assert info.duration == pytest.approx(2.0, abs=1e-3)
    assert not info.has_audio and info.video_codec == "h264"
    frames = media.read_video_frames(clip)
    assert frames.shape == (50, 120, 160, 3) and frames.dtype == np.uint8
    assert info.frames_at_model_fps == 50


def test_24fps_clip_resampled_to_25fps_keeps_duration(tmp_path):
    clip = make_clip(tmp_path / "b.mp4", fps=24, seconds=2.0)
    frames = media.read_video_frames(clip)
    assert len(frames) == 50  # 2.0 s at 25 fps
    assert len(frames) / media.VIDEO_FPS == pytest.approx(media.probe(clip).duration, abs=1 / media.VIDEO_FPS)
    # duplication by timestamp: 24 source frames over 1 s fill 25 output slots, so exactly one repeat per second
    repeats = sum(np.array_equal(frames[i], frames[i + 1]) for i in range(len(frames) - 1))
    assert repeats == 2


def test_rotated_clip_comes_out_upright(tmp_path):
    # A frame whose top-left quadrant is white: after a 90° display rotation it must move, and the size swaps.
    pattern = np.zeros((4, 120, 160, 3), np.uint8)
    pattern[:, :60, :80] = 255
    plain = media.write_video(tmp_path / "plain.mp4", [pattern])
    rotated = tmp_path / "rot.mp4"
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    info = media.probe(rotated)
    assert info.rotation in (90, 270) and (info.width, info.height) == (120, 160)
    frames = media.read_video_frames(rotated)
    assert frames.shape[1:] == (160, 120, 3)
    # The display matrix angle is counter-clockwise, as np.rot90 turns: the decoded frame must equal the
    # original rotated that way (a phone video stored sideways plays upright).
    expected = np.rot90(pattern[0], k=info.rotation // 90)
    assert np.abs(frames[0].astype(int) - expected).mean() < 2


def test_chunks_are_bounded_and_seeking_is_exact(tmp_path):
    clip = media.write_video(tmp_path / "c.mp4", [np.random.default_rng(0).integers(0, 255, (40, 64, 48, 3), np.uint8)])
    full = media.read_video_frames(clip)
    chunks = list(media.iter_video_frames(clip, chunk_size=16))
    assert [len(c) for c in chunks] == [16, 16, 8]
    np.testing.assert_array_equal(np.concatenate(chunks), full)
    part = np.concatenate(list(media.iter_video_frames(clip, chunk_size=5, start=13, count=11)))
    np.testing.assert_array_equal(part, full[13:24])


@pytest.mark.slow
def test_chunked_reading_of_a_long_clip_keeps_memory_bounded(tmp_path):
    clip = make_clip(tmp_path / "long.mp4", fps=25, seconds=60, size="320x240")
    whole_bytes = 60 * 25 * 320 * 240 * 3  # 345.6 MB if the clip were held at once
    tracemalloc.start()
    total = 0
    for chunk in media.iter_video_frames(clip, chunk_size=16):
        total += len(chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == 1500
    assert peak < 16 * 320 * 240 * 3 * 4  # a few chunks' worth (< 15 MB), not the 345 MB of the clip
    assert peak < whole_bytes / 20


# ------------------------------------------------------------------------------------------------ reading audio


def test_44k_stereo_loads_as_16k_mono_with_duration_kept(tmp_path):
    wav = make_tone(tmp_path / "s.wav", rate=44_100, channels=2, seconds=2.5)
    audio = media.load_audio(wav)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / media.SAMPLE_RATE - 2.5) <= 0.001
    # lavfi's sine has amplitude 1/8; -ac 2 spreads it as 1/8/√2 per channel, and their mean is that again.
    assert np.abs(audio).max() == pytest.approx(0.125 / np.sqrt(2), abs=0.002)


def _write_pcm16_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """(n, channels) int16 samples as a 16-bit WAV, written with the standard library."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(samples.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return path


def test_stereo_with_different_channels_loads_as_their_rounded_mean_over_32768(tmp_path):
    """The reference's decode (s16le, /32768): mono = (L + R) / 2 rounded half up to int16, not (L + R) / √2."""
    rng = np.random.default_rng(0)
    left = rng.integers(-20_000, 20_000, media.SAMPLE_RATE).astype(np.int64)
    right = (left // 3 + rng.integers(-5_000, 5_000, media.SAMPLE_RATE)).astype(np.int64)  # channels differ
    wav = _write_pcm16_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), media.SAMPLE_RATE)
    audio = media.load_audio(wav)
    expected = np.floor((left + right) / 2 + 0.5) / 32768.0
    np.testing.assert_array_equal(audio, expected.astype(np.float32))


def test_44k_stereo_mp3_has_the_loudness_of_its_mono_version(tmp_path):
    """The same tone in both channels decodes at the mono file's level (a float downmix would be √2 louder)."""
    sine = "sine=frequency=440:sample_rate=44100:duration=1"
    ffmpeg("-f", "lavfi", "-i", sine, "-af", "pan=stereo|c0=c0|c1=c0", str(tmp_path / "s.mp3"))  # both = the tone
    stereo = media.load_audio(tmp_path / "s.mp3")
    mono = media.load_audio(make_tone(tmp_path / "m.mp3", rate=44_100, channels=1, seconds=1.0))
    assert np.abs(stereo).max() / np.abs(mono).max() == pytest.approx(1.0, abs=0.01)
    rms = lambda x: float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))  # noqa: E731
    assert rms(stereo) / rms(mono) == pytest.approx(1.0, abs=0.01)


def test_16k_mono_wav_loads_as_its_samples_over_32768(tmp_path):
    """Mono at the model's rate is passed through unchanged: each int16 sample / 32768, bit for bit."""
    samples = np.random.default_rng(1).integers(-32768, 32768, (4_000, 1))
    audio = media.load_audio(_write_pcm16_wav(tmp_path / "mono.wav", samples, media.SAMPLE_RATE))
    np.testing.assert_array_equal(audio, (samples[:, 0] / 32768.0).astype(np.float32))


@pytest.mark.parametrize("suffix,codec", [(".mp3", ()), (".m4a", ("-c:a", "aac")), (".flac", ()), (".ogg", ("-c:a", "libvorbis"))])
def test_compressed_audio_formats_load(tmp_path, suffix, codec):
    path = make_tone(tmp_path / f"t{suffix}", rate=22_050, channels=1, seconds=1.0, codec=codec)
    audio = media.load_audio(path)
    assert abs(len(audio) / media.SAMPLE_RATE - 1.0) < 0.06  # lossy codecs pad by up to a frame
    assert np.abs(audio).max() > 0.1


def test_audio_track_of_a_video_and_silence(tmp_path):
    video = tmp_path / "v.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo",
           "-t", "1.2", "-pix_fmt", "yuv420p", "-c:a", "aac", str(video))  # fmt: skip
    audio = media.load_audio(video)
    assert abs(len(audio) / media.SAMPLE_RATE - 1.2) < 0.05
    assert np.abs(audio).max() == 0.0  # silence is valid audio, not an error
    assert media.is_silent(audio)


def test_silence_is_a_peak_below_minus_50_dbfs():
    assert media.is_silent(np.zeros(16000, np.float32))
    assert media.is_silent(np.full(16000, 1e-3, np.float32))  # -60 dBFS
    assert media.is_silent(np.full(16000, 10 ** (-50.1 / 20), np.float32))
    assert not media.is_silent(np.full(16000, 10 ** (-49.9 / 20), np.float32))
    quiet_click = np.zeros(16000, np.float32)
    quiet_click[8000] = -0.01  # one sample at -40 dBFS is enough (either sign)
    assert not media.is_silent(quiet_click)
    assert media.is_silent(np.zeros(0, np.float32))


# ------------------------------------------------------------------------------------------------ writing


def reprobe_streams(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_name,codec_type,nb_read_frames,duration,pix_fmt,width,height,channels",
                          "-of", "json", str(path)], capture_output=True, check=True, text=True).stdout  # fmt: skip
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def test_written_mp4_has_h264_aac_right_frames_and_duration(tmp_path):
    frames = np.random.default_rng(1).integers(0, 255, (62, 96, 128, 3), np.uint8)
    audio = np.sin(np.linspace(0, 2 * np.pi * 440 * 2.48, int(2.48 * media.SAMPLE_RATE))).astype(np.float32) * 0.5
    out = media.write_video(tmp_path / "out.mp4", [frames[:30], frames[30:]], audio=audio)
    streams = reprobe_streams(out)
    assert streams["video"]["codec_name"] == "h264" and streams["video"]["pix_fmt"] == "yuv420p"
    assert int(streams["video"]["nb_read_frames"]) == 62
    assert float(streams["video"]["duration"]) == pytest.approx(62 / 25, abs=1e-3)
    assert streams["audio"]["codec_name"] == "aac"
    assert float(streams["audio"]["duration"]) == pytest.approx(2.48, abs=0.04)
    # faststart: the moov atom comes before mdat
    head = out.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))
    assert list(tmp_path.iterdir()) == [out]  # no temporary left behind


def test_odd_frame_size_is_padded_and_pixels_kept(tmp_path):
    frames = np.full((5, 33, 47, 3), 90, np.uint8)
    frames[:, :, -1] = 200  # the last column is repeated into the padding
    out = media.write_video(tmp_path / "odd.mp4", [frames])
    back = media.read_video_frames(out)
    assert back.shape == (5, 34, 48, 3)
    assert np.abs(back[:, :30, :40].astype(int) - 90).max() <= 3
    assert np.abs(back[:, :30, -1].astype(int) - 200).max() <= 6


def test_audio_from_a_file_is_muxed(tmp_path):
    wav = make_tone(tmp_path / "a.wav", rate=16_000, channels=1, seconds=1.0)
    out = media.write_video(tmp_path / "o.mp4", [np.zeros((25, 32, 32, 3), np.uint8)], audio=wav)
    streams = reprobe_streams(out)
    assert int(streams["video"]["nb_read_frames"]) == 25
    assert float(streams["audio"]["duration"]) == pytest.approx(1.0, abs=0.04)


def test_crash_while_writing_leaves_nothing(tmp_path):
    target = tmp_path / "never.mp4"

    def frames():
        yield np.zeros((10, 32, 32, 3), np.uint8)
        raise RuntimeError("boom in the middle")

    with pytest.raises(RuntimeError, match="boom"):
        media.write_video(target, frames())
    assert list(tmp_path.iterdir()) == []


def test_existing_output_survives_a_failed_write(tmp_path):
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"previous result")
    with pytest.raises(ValueError, match="uint8 of shape"):
        with media.VideoWriter(target, width=32, height=32) as writer:
            writer.write(np.zeros((3, 16, 16, 3), np.uint8))  # wrong size
    assert target.read_bytes() == b"previous result"
    assert list(tmp_path.iterdir()) == [target]


def test_frames_for_duration():
    assert media.frames_for_duration(2.0) == 50
    assert media.frames_for_duration(2.001) == 51
    assert media.frames_for_duration(0.01) == 1


# ------------------------------------------------------------------------------------------------ bad input


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="File not found"):
        media.probe(tmp_path / "nope.mp4")


def assert_plain_words(message: str, tmp_path: Path) -> None:
    """No path, libav object address or tool output reaches the user (issue 11)."""
    assert str(tmp_path) not in message and "/" not in message
    assert not re.search(r"@ 0x[0-9a-f]+", message)
    for tool_words in ("ffprobe", "ffmpeg", "Invalid data found", "moov atom", "[mov,mp4", "[h264"):
        assert tool_words not in message


def test_not_a_media_file(tmp_path, caplog):
    junk = tmp_path / "not_media.mp4"
    junk.write_text("this is a text file, not a video\n" * 20)
    with caplog.at_level("INFO", logger="latentsync.media"):
        with pytest.raises(InputError, match="not a readable video or audio file") as err:
            media.read_video_frames(junk)
    message = str(err.value)
    assert message.startswith("not_media.mp4 is not a readable")  # the name as given, not capitalised
    assert_plain_words(message, tmp_path)
    assert str(junk) in caplog.text and "Invalid data" in caplog.text  # the details stay in the server's log


def test_missing_file_is_named_by_its_base_name(tmp_path):
    with pytest.raises(InputError) as err:
        media.probe(tmp_path / "uploads" / "gone.mp4")
    assert str(err.value) == "File not found: gone.mp4"


def test_audio_decode_failure_is_explained_in_plain_words(tmp_path, caplog, monkeypatch):
    """Fault injection: ffmpeg fails on a file ffprobe could read; its stderr goes to the log only."""
    wav = make_tone(tmp_path / "speech.wav", rate=16_000, channels=1, seconds=0.5)
    real_run = subprocess.run
    stderr = f"[aac @ 0x55d0c0ffee00] Invalid data found when processing input\n{wav}: Invalid argument\n".encode()

    def failing_decode(cmd, *args, **kwargs):
        if "pcm_s16le" in cmd:
            return subprocess.CompletedProcess(cmd, 1, b"", stderr)
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", failing_decode)
    with caplog.at_level("INFO", logger="latentsync.media"):
        with pytest.raises(InputError, match="^Could not decode the audio in speech.wav") as err:
            media.load_audio(wav)
    assert_plain_words(str(err.value), tmp_path)
    assert "0x55d0c0ffee00" in caplog.text


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.touch()
    with pytest.raises(InputError, match="empty"):
        media.load_audio(empty)


def test_corrupt_video(tmp_path):
    clip = make_clip(tmp_path / "ok.mp4", fps=25, seconds=2.0)
    data = bytearray(clip.read_bytes())
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(bytes(data[: len(data) // 3]))  # truncated: moov atom at the end is gone
    with pytest.raises(InputError) as err:
        media.read_video_frames(corrupt)
    assert "corrupt.mp4" in str(err.value)


def test_zero_frames(tmp_path):
    audio_only = make_tone(tmp_path / "only.m4a", rate=16_000, channels=1, seconds=0.5, codec=("-c:a", "aac"))
    with pytest.raises(InputError, match="no video stream"):
        media.read_video_frames(audio_only)
    # ffmpeg 5.1 writes a zero-frame ffv1 .mkv broken: that one only gets "not a readable file".
    broken = tmp_path / "zero.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "0", "-c:v", "ffv1", str(broken))
    with pytest.raises(InputError, match="zero.mkv"):
        media.read_video_frames(broken)


def test_a_real_zero_frame_video_says_so(tmp_path):
    # A well-formed AVI with an empty video stream: it probes fine (64x48, 0 frames, 0 s).
    empty = tmp_path / "z.avi"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "0", "-c:v", "mpeg4", str(empty))
    info = media.probe(empty)
    assert (info.width, info.height, info.num_frames, info.frames_at_model_fps) == (64, 48, 0, 0)
    assert info.empty_video
    with pytest.raises(InputError, match=r"^z\.avi contains no video frames") as err:
        media.read_video_frames(empty)
    assert "Cannot determine format" not in str(err.value)
    with pytest.raises(InputError, match="contains no video frames"):
        media.check_video(info)
    # Were the container silent about it, decoding finds nothing and says that (not "corrupt or unsupported").
    undeclared = dataclasses.replace(info, empty_video=False)
    with pytest.raises(InputError, match=r"^z\.avi contains no decodable video frames"):
        list(media.iter_video_frames(empty, info=undeclared))


def test_video_without_audio_where_audio_is_required(tmp_path):
    clip = make_clip(tmp_path / "mute.mp4", fps=25, seconds=1.0)
    with pytest.raises(InputError, match="no audio track"):
        media.load_audio(clip)


def test_zero_length_audio(tmp_path):
    wav = tmp_path / "zero.wav"
    media.write_wav(wav, np.zeros(0, np.float32))
    with pytest.raises(InputError, match="(empty|no audio)"):
        media.load_audio(wav)


def test_unsupported_codec(tmp_path):
    # A stream ffprobe can see but ffmpeg cannot decode: a made-up codec tag in a raw container.
    fake = tmp_path / "fake.mp4"
    clip = make_clip(tmp_path / "src.mp4", fps=25, seconds=1.0)
    data = bytearray(clip.read_bytes())
    i = data.find(b"avc1", data.find(b"stsd"))
    data[i : i + 4] = b"zzzz"  # the sample description now names a codec nobody knows
    fake.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        media.read_video_frames(fake)
    assert "fake.mp4" in str(err.value)


# ------------------------------------------------------------------------------------------------ damaged files


def decode_errors(path: Path) -> list[str]:
    """What ffmpeg itself says at -v error when decoding ``path`` (it exits 0 on damaged streams)."""
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True)  # fmt: skip
    return [line for line in proc.stderr.splitlines() if line.strip()]


def test_truncated_faststart_mp4_is_reported(tmp_path):
    # moov first, so the header survives the cut and still promises 100 frames; ffmpeg exits 0 with 52 of them.
    clip = make_clip(tmp_path / "whole.mp4", fps=25, seconds=4.0, extra=("-movflags", "+faststart"))
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert media.probe(cut).num_frames == 100
    with pytest.raises(InputError, match=r"^cut\.mp4 looks truncated or corrupt"):
        media.read_video_frames(cut)


def test_video_ending_long_before_its_declared_length_is_reported(tmp_path):
    # No decoding error at all, only a stream that stops at 4 s of the 9 s its (Matroska) track header declares.
    clip = make_clip(tmp_path / "four.mkv", fps=25, seconds=4.0)
    data = clip.read_bytes()
    assert data.count(b"00:00:04.000000000") == 1  # the track's DURATION tag
    short = tmp_path / "short.mkv"
    short.write_bytes(data.replace(b"00:00:04.000000000", b"00:00:09.000000000"))
    assert decode_errors(short) == []
    assert media.probe(short).frames_at_model_fps == 225
    with pytest.raises(InputError, match=r"^short\.mkv looks truncated or corrupt: it declares 9\.00 s .* 4\.00 s"):
        media.read_video_frames(short)
    # Reading only a part that exists is fine; running into the missing end is not.
    assert len(media.read_video_frames(short, max_frames=50)) == 50
    with pytest.raises(InputError, match="truncated"):
        list(media.iter_video_frames(short, start=90, count=50))


def test_corrupt_stream_data_is_reported_and_ffmpegs_first_error_logged(tmp_path, caplog):
    clip = make_clip(tmp_path / "clean.mp4", fps=25, seconds=4.0)
    data = bytearray(clip.read_bytes())
    n = len(data)
    for i in range(n // 3, 2 * n // 3, 7):
        data[i] ^= 0x55
    corrupt = tmp_path / "noisy.mp4"
    corrupt.write_bytes(bytes(data))
    errors = decode_errors(corrupt)
    assert errors  # ffmpeg complains (and still exits 0, returning all 100 damaged frames)
    first = re.sub(r" @ 0x[0-9a-f]+\]", "]", errors[0].strip())
    with caplog.at_level("INFO", logger="latentsync.media"):
        with pytest.raises(InputError) as err:
            media.read_video_frames(corrupt)
    message = str(err.value)
    assert message.startswith("noisy.mp4 looks truncated or corrupt")
    assert " @ 0x" in errors[0]
    assert_plain_words(message, tmp_path)  # ffmpeg's own words stay out of the message...
    assert first in caplog.text  # ...and go to the server's log, without the object address


def make_vfr(path: Path) -> Path:
    """One second at 10 fps then one second at 30 fps, timestamps kept as they are (-fps_mode passthrough)."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=1",
           "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30:duration=1",
           "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]", "-fps_mode", "passthrough",
           "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(path))  # fmt: skip
    return path


# Normal files of every kind users upload: none may be mistaken for a damaged or truncated one.
NORMAL_CLIPS = {
    "24fps.mp4": dict(fps=24),
    "25fps.mp4": dict(fps=25),
    "30fps.mp4": dict(fps=30),
    "29.97fps.mp4": dict(fps="30000/1001"),
    "60fps.mp4": dict(fps=60),
    "bframes.mkv": dict(fps=30, codec=("-c:v", "libx264", "-preset", "medium")),
    "vp8.webm": dict(fps=30, codec=("-c:v", "libvpx", "-b:v", "300k")),
    "start1.4s.ts": dict(fps=30),
}


def make_normal_clip(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    x264 = ("-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", "-g", "12")
    if name == "vfr.mkv":
        return make_vfr(path)
    if name == "rotated.mov":
        plain = make_clip(tmp_path / "plain.mp4", fps=30, seconds=3.0)
        ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(path))
    elif name == "longer_audio.mp4":  # the sound runs half a second past the picture, as phone clips often do
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30:duration=3", "-f", "lavfi", "-i", "sine=duration=3.5",
               *x264, "-c:a", "aac", str(path))  # fmt: skip
    elif name == "late_video.mkv":  # the picture starts 0.32 s after the sound: padded with its first frame
        ffmpeg("-itsoffset", "0.32", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30:duration=3",
               "-f", "lavfi", "-i", "sine=duration=3.32", "-map", "0:v", "-map", "1:a", *x264, "-c:a", "aac", str(path))  # fmt: skip
    elif name == "streamed.webm":  # written to a pipe, like a browser recording: no seek index, no track durations
        webm = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30",
                               "-t", "3", "-c:v", "libvpx", "-b:v", "300k", "-g", "12", "-f", "webm", "pipe:1"],
                              capture_output=True, check=True).stdout  # fmt: skip
        path.write_bytes(webm)
    elif name == "fragmented.mp4":
        make_clip(path, fps=30, seconds=3.0, extra=("-movflags", "frag_keyframe+empty_moov"))
    else:
        spec = NORMAL_CLIPS[name]
        make_clip(path, fps=spec["fps"], seconds=3.0, codec=spec.get("codec", X264_FAST))
    return path


SPECIAL_CLIPS = ["vfr.mkv", "rotated.mov", "longer_audio.mp4", "late_video.mkv", "streamed.webm", "fragmented.mp4"]


@pytest.mark.parametrize("name", [*NORMAL_CLIPS, *SPECIAL_CLIPS])
def test_normal_files_read_without_complaint(tmp_path, name):
    clip = make_normal_clip(tmp_path, name)
    assert decode_errors(clip) == []
    info = media.probe(clip)
    frames = media.read_video_frames(clip)
    assert abs(len(frames) - info.frames_at_model_fps) <= 1
    assert len(frames) == pytest.approx(info.video_duration * media.VIDEO_FPS, abs=1.5)


def test_demo_video_reads_without_complaint():
    frames = media.read_video_frames(DEMO_VIDEO)
    assert len(frames) == media.probe(DEMO_VIDEO).frames_at_model_fps == 100


# ------------------------------------------------------------------------------------------------ seeking

SEEK_CLIPS = {  # a keyframe every 12 source frames, so that -ss really lands inside the file
    "24fps.mp4": "24",
    "25fps.mp4": "25",
    "30fps.mp4": "30",
    "29.97fps.mp4": "30000/1001",
    "60fps.mp4": "60",
    "start1.4s.ts": "30",  # MPEG-TS starts its clock at 1.4 s (and has no seek index)
}
QUICK_STARTS = [1, 2, 3, 9, 12, 13, 26, 37, 38, 51, 64, 77, 90, 97]


def check_seeks(clip: Path, starts: list[int], count: int = 3) -> None:
    info = media.probe(clip)
    full = media.read_video_frames(clip)
    assert len(full) == info.frames_at_model_fps
    wrong = []
    for k in starts:
        chunks = list(media.iter_video_frames(clip, 2, start=k, count=count, info=info))
        part = np.concatenate(chunks) if chunks else np.zeros((0, *full.shape[1:]), np.uint8)
        if not np.array_equal(part, full[k : k + count]):
            wrong.append(k)
    assert wrong == [], f"start=k differs from frames k.. of a full read for k in {wrong}"


@pytest.mark.parametrize("name", SEEK_CLIPS)
def test_seeking_gives_exactly_the_frames_of_a_full_read(tmp_path, name):
    clip = make_clip(tmp_path / name, fps=SEEK_CLIPS[name], seconds=4.0, extra=("-g", "12"))
    if name.endswith(".ts"):
        assert media.probe(clip).start_time == pytest.approx(1.4)
    check_seeks(clip, QUICK_STARTS)


@pytest.mark.parametrize("name", ["late_video.mkv", "streamed.webm", "rotated.mov"])
def test_seeking_is_exact_in_other_containers(tmp_path, name):
    clip = make_normal_clip(tmp_path, name)
    if name == "late_video.mkv":  # the slots before the picture starts show its first frame
        info = media.probe(clip)
        late = round((info.video_start - info.start_time) * media.VIDEO_FPS)
        full = media.read_video_frames(clip)
        assert late >= 8 and len(full) == info.frames_at_model_fps
        assert all(np.array_equal(full[i], full[late]) for i in range(late))
        assert not np.array_equal(full[late], full[late + 1])
    check_seeks(clip, [k for k in QUICK_STARTS if k < 70])


@pytest.mark.slow
@pytest.mark.parametrize("name", [*SEEK_CLIPS, "vfr.mkv"])
def test_seeking_is_exact_at_every_frame(tmp_path, name):
    if name == "vfr.mkv":  # exact here too: no source frame lasts anywhere near SEEK_MARGIN_SECONDS
        clip = make_vfr(tmp_path / name)
    else:
        clip = make_clip(tmp_path / name, fps=SEEK_CLIPS[name], seconds=2.0, extra=("-g", "12"))
    check_seeks(clip, list(range(media.probe(clip).frames_at_model_fps)))


def test_seek_arguments_are_checked(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", fps=25, seconds=1.0)
    with pytest.raises(ValueError, match="start"):
        list(media.iter_video_frames(clip, start=-1))
    assert list(media.iter_video_frames(clip, start=5, count=0)) == []


# ------------------------------------------------------------------------------------------------ probe flags


def test_probe_flags_variable_frame_rate(tmp_path):
    for suffix in (".mp4", ".mkv"):
        vfr = media.probe(make_vfr(tmp_path / f"vfr{suffix}"))
        assert vfr.variable_fps, suffix
        assert vfr.num_frames == 40 and vfr.fps == pytest.approx(40 / vfr.video_duration, rel=1e-3)
        cfr = media.probe(make_clip(tmp_path / f"cfr{suffix}", fps=30, seconds=2.0))
        assert not cfr.variable_fps and cfr.fps == 30.0, suffix


# ------------------------------------------------------------------------------------------------ not a video


def test_still_image_given_as_video_is_refused(tmp_path):
    png = tmp_path / "face.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", str(png))
    renamed = tmp_path / "face.mp4"
    renamed.write_bytes(png.read_bytes())
    jpeg_in_mov = tmp_path / "face.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", "-c:v", "mjpeg", "-f", "mov", str(jpeg_in_mov))
    for path in (renamed, jpeg_in_mov):
        assert media.probe(path).still_image
        with pytest.raises(InputError, match=rf"^{path.name} is a still image, not a video"):
            media.read_video_frames(path)
    # An animated GIF is a (short) video, and a one-second clip is no still image either.
    gif = tmp_path / "anim.gif"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "1", str(gif))
    assert not media.probe(gif).still_image and len(media.read_video_frames(gif)) == 25


def test_max_frames_zero_gives_an_empty_array(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", fps=25, seconds=1.0)
    empty = media.read_video_frames(clip, max_frames=0)
    assert empty.shape == (0, 120, 160, 3) and empty.dtype == np.uint8
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video\n" * 10)
    with pytest.raises(InputError, match="junk.mp4"):  # the file is still checked
        media.read_video_frames(junk, max_frames=0)


# ------------------------------------------------------------------------------------------------ writer checks


def test_stereo_audio_array_is_written_as_stereo_with_its_duration(tmp_path):
    t = np.arange(int(1.0 * media.SAMPLE_RATE)) / media.SAMPLE_RATE
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], axis=1).astype(np.float32) * 0.5
    out = media.write_video(tmp_path / "st.mp4", [np.zeros((25, 32, 32, 3), np.uint8)], audio=stereo)
    audio = reprobe_streams(out)["audio"]
    assert int(audio["channels"]) == 2
    assert float(audio["duration"]) == pytest.approx(1.0, abs=0.04)  # not 2.0 s of interleaved mono
    wav = tmp_path / "st.wav"
    media.write_wav(wav, stereo)
    info = media.probe(wav)
    assert info.audio_channels == 2 and info.audio_duration == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="channels"):
        media.write_wav(tmp_path / "x.wav", stereo.T)  # (channels, samples) by mistake


def test_empty_audio_array_is_refused(tmp_path):
    with pytest.raises(ValueError, match="audio array is empty"):
        media.VideoWriter(tmp_path / "o.mp4", width=32, height=32, audio=np.zeros(0, np.float32))
    assert list(tmp_path.iterdir()) == []


def test_audio_file_without_an_audio_track_is_an_input_error(tmp_path):
    mute = make_clip(tmp_path / "mute.mp4", fps=25, seconds=1.0)
    with pytest.raises(InputError, match=r"^mute\.mp4 has no audio track"):
        media.write_video(tmp_path / "o.mp4", [np.zeros((5, 32, 32, 3), np.uint8)], audio=mute)
    with pytest.raises(InputError, match="File not found"):
        media.VideoWriter(tmp_path / "o.mp4", width=32, height=32, audio=tmp_path / "missing.wav")
    assert list(tmp_path.iterdir()) == [mute]


def test_bad_output_paths_are_refused_before_encoding(tmp_path):
    folder = tmp_path / "result.mp4"
    folder.mkdir()
    with pytest.raises(InputError, match=f"Cannot write {re.escape(str(folder))}: it is an existing folder"):
        media.VideoWriter(folder, width=32, height=32)
    missing = tmp_path / "no" / "such" / "out.mp4"
    with pytest.raises(InputError, match=f"Cannot write {re.escape(str(missing))}: the folder .* does not exist"):
        media.VideoWriter(missing, width=32, height=32)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        media.VideoWriter(a_file / "out.mp4", width=32, height=32)

    def frames():
        raise AssertionError("the output path is checked before any frame is computed")
        yield

    with pytest.raises(InputError, match="existing folder"):
        media.write_video(folder, frames())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "result.mp4"]
    assert list(folder.iterdir()) == []
    made = media.write_video(missing, [np.zeros((3, 32, 32, 3), np.uint8)], create_folders=True)
    assert made.is_file()


def test_unwritable_output_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        try:
            (locked / "probe").touch()
        except PermissionError:
            pass
        else:  # root ignores modes: a read-only sysfs, where there is one, stands in
            try:
                with tempfile.TemporaryFile(dir="/sys"):
                    pass
            except OSError:
                locked = Path("/sys")
            else:
                pytest.skip("this user may write into read-only folders, and /sys is writable too")
        target = locked / "out.mp4"
        with pytest.raises(InputError, match=f"^Cannot write {re.escape(str(target))}: .*Choose another output path"):
            media.VideoWriter(target, width=32, height=32)
        assert not any(p.name.startswith(".out.") for p in locked.iterdir())
    finally:
        (tmp_path / "locked").chmod(0o700)


def test_failed_final_rename_leaves_no_temporary(tmp_path):
    target = tmp_path / "late.mp4"
    writer = media.VideoWriter(target, width=32, height=32)
    writer.write(np.zeros((5, 32, 32, 3), np.uint8))
    target.mkdir()  # something takes the name while we encode
    with pytest.raises(InputError, match=f"Cannot write {re.escape(str(target))}"):
        writer.close()
    assert list(tmp_path.iterdir()) == [target] and list(target.iterdir()) == []
