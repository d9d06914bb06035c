"""Media I/O round trips with real ffmpeg: frame counts at 25 fps, rotation, audio resampling, MP4 writing, errors."""

from __future__ import annotations

import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from latentsync import media
from latentsync.errors import InputError


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_clip(path: Path, *, fps: float, seconds: float, size: str = "160x120", extra: tuple[str, ...] = ()) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-t", str(seconds), *extra,
           "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(path))  # fmt: skip
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
    assert 0.1 < np.abs(audio).max() <= 1.0  # lavfi sine amplitude is 1/8


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


# ------------------------------------------------------------------------------------------------ writing


def reprobe_streams(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_name,codec_type,nb_read_frames,duration,pix_fmt,width,height",
                          "-of", "json", str(path)], capture_output=True, check=True, text=True).stdout  # fmt: skip
    import json

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


def test_not_a_media_file(tmp_path):
    junk = tmp_path / "notes.mp4"
    junk.write_text("this is a text file, not a video\n" * 20)
    with pytest.raises(InputError, match="not a readable video or audio file"):
        media.read_video_frames(junk)


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
    empty_video = tmp_path / "zero.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "0", "-c:v", "ffv1", str(empty_video))
    with pytest.raises(InputError):
        media.read_video_frames(empty_video)


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
