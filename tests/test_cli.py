"""The command line: help, exit codes 0/1/2 and readable messages instead of tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from latentsync import media
from latentsync.inference.cli import EXIT_FAILURE, EXIT_INPUT, EXIT_OK, main

from .conftest import DEMO_AUDIO, DEMO_VIDEO, REPO_ROOT


@pytest.fixture(autouse=True)
def private_face_cache(tmp_path_factory, monkeypatch):
    """Face tracks go to a test folder, never the user's Hugging Face cache."""
    monkeypatch.setenv("LATENTSYNC_CACHE_DIR", str(tmp_path_factory.mktemp("face-tracks")))


def test_help_documents_every_option():
    proc = subprocess.run([sys.executable, "-m", "latentsync", "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0
    for option in ("--video", "--audio", "--output", "--version", "--steps", "--guidance", "--seed", "--device",
                   "--dtype", "--checkpoints", "--speaker", "--length-mode", "--native-fps", "--crf",
                   "--no-face-cache", "--cache-interval", "--no-overlap"):  # fmt: skip
        assert option in proc.stdout
    assert "Exit codes" in proc.stdout


def test_missing_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as err:
        main(["--video", str(DEMO_VIDEO)])
    assert err.value.code == EXIT_INPUT
    assert "--audio" in capsys.readouterr().err


def test_missing_file_exits_2_with_a_message(tmp_path, capsys):
    code = main(["--video", str(tmp_path / "none.mp4"), "--audio", str(DEMO_AUDIO), "--output", str(tmp_path / "o.mp4")])
    assert code == EXIT_INPUT
    err = capsys.readouterr().err
    assert "file not found: none.mp4" in err and "Traceback" not in err
    assert str(tmp_path) not in err  # the base name, as everywhere: no absolute paths in messages


def test_a_folder_given_as_the_audio_is_named_as_a_folder(tmp_path, capsys):
    (tmp_path / "speech").mkdir()
    code = main(["--video", str(DEMO_VIDEO), "--audio", str(tmp_path / "speech"), "--output", str(tmp_path / "o.mp4")])
    assert code == EXIT_INPUT
    err = capsys.readouterr().err
    assert "--audio: speech is a folder, not a file" in err and "not found" not in err
    assert not (tmp_path / "o.mp4").exists()


def test_bad_option_value_exits_2(tmp_path, capsys):
    code = main(["--video", str(DEMO_VIDEO), "--audio", str(DEMO_AUDIO), "--output", str(tmp_path / "o.mp4"),
                 "--steps", "0"])  # fmt: skip
    assert code == EXIT_INPUT and "steps must be" in capsys.readouterr().err


def test_new_options_are_checked_before_the_models_load(tmp_path, capsys):
    base = ["--video", str(DEMO_VIDEO), "--audio", str(DEMO_AUDIO), "--output", str(tmp_path / "o.mp4"),
            "--checkpoints", str(tmp_path)]  # no weights here: reaching the loader would exit 1, not 2
    assert main([*base, "--speaker", "400,10"]) == EXIT_INPUT
    assert "(400, 10) lies outside the 320x320 frame" in capsys.readouterr().err
    assert main([*base, "--speaker", "mouth"]) == EXIT_INPUT
    assert "speaker must be 'largest' or a point" in capsys.readouterr().err
    assert main([*base, "--crf", "70"]) == EXIT_INPUT
    assert "crf must be an integer from 0" in capsys.readouterr().err
    assert main([*base, "--cache-interval", "0"]) == EXIT_INPUT
    assert "cache_interval must be an integer from 1 (no step caching)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main([*base, "--length-mode", "bounce"])
    assert err.value.code == EXIT_INPUT and "invalid choice: 'bounce'" in capsys.readouterr().err
    # a photo is accepted as the video: the run gets as far as the (missing) weights
    photo = tmp_path / "face.png"
    media.write_video(tmp_path / "one.mp4", [media.read_video_frames(DEMO_VIDEO, max_frames=1)])
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(tmp_path / "one.mp4"), "-frames:v", "1", str(photo)],
                   check=True)  # fmt: skip
    assert main([*base[:1], str(photo), *base[2:], "--length-mode", "freeze"]) == EXIT_FAILURE
    assert "latentsync_unet.pt" in capsys.readouterr().err


def test_missing_weights_exit_1_naming_the_problem(tmp_path, capsys):
    code = main(["--video", str(DEMO_VIDEO), "--audio", str(DEMO_AUDIO), "--output", str(tmp_path / "o.mp4"),
                 "--checkpoints", str(tmp_path)])  # fmt: skip
    assert code == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "latentsync_unet.pt" in err and "Traceback" not in err


def test_no_face_exits_2(tmp_path, tiny_checkpoints, capsys):
    video = media.write_video(tmp_path / "grey.mp4", [np.full((8, 64, 64, 3), 128, np.uint8)])
    code = main(["--video", str(video), "--audio", str(DEMO_AUDIO), "--output", str(tmp_path / "o.mp4"),
                 "--checkpoints", str(tiny_checkpoints), "--device", "cpu"])  # fmt: skip
    assert code == EXIT_INPUT
    assert "face" in capsys.readouterr().err.lower()
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_success_writes_the_video(tmp_path, tiny_checkpoints, capsys):
    video = tmp_path / "v.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(DEMO_VIDEO), "-frames:v", "10", str(video)], check=True)
    audio = tmp_path / "a.wav"
    media.write_wav(audio, media.load_audio(DEMO_AUDIO)[: int(0.3 * media.SAMPLE_RATE)])
    out = tmp_path / "o.mp4"
    code = main(["--video", str(video), "--audio", str(audio), "--output", str(out), "--steps", "1",
                 "--guidance", "1.0", "--checkpoints", str(tiny_checkpoints), "--device", "cpu"])  # fmt: skip
    assert code == EXIT_OK
    assert media.probe(out).num_frames == 8  # ceil(0.3 s x 25)
    assert f"wrote {out}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ checked up front
# Each case runs with an empty --checkpoints folder: had the models been loaded first, it would exit 1 naming the
# missing weights instead of exit 2 naming the real problem.


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder in which no file can be created: mode 555, or for root (who ignores modes) sysfs."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    try:
        with tempfile.TemporaryFile(dir="/sys"):
            pass
    except OSError:
        return Path("/sys")
    pytest.skip("running as root without a read-only sysfs to stand in for an unwritable folder")


OUTPUT_PROBLEMS = ["directory", "missing folder", "unwritable folder", "an input", "an input, respelled"]


@pytest.mark.parametrize("case", OUTPUT_PROBLEMS)
def test_output_that_cannot_be_written_exits_2_before_loading(tmp_path, capsys, case):
    audio = tmp_path / "a.wav"
    media.write_wav(audio, media.load_audio(DEMO_AUDIO)[: media.SAMPLE_RATE])
    (tmp_path / "weights").mkdir()
    output, expected = {
        "directory": (lambda: tmp_path / "weights", "is a directory"),
        "missing folder": (lambda: tmp_path / "no" / "such" / "o.mp4", "does not exist"),
        "unwritable folder": (lambda: unwritable_folder(tmp_path) / "o.mp4", "not writable"),
        "an input": (lambda: audio, "is also an input"),
        "an input, respelled": (lambda: tmp_path / "weights" / ".." / "a.wav", "is also an input"),
    }[case]
    output = output()
    before = sorted(tmp_path.rglob("*"))
    code = main(["--video", str(DEMO_VIDEO), "--audio", str(audio), "--output", str(output),
                 "--checkpoints", str(tmp_path / "weights"), "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_INPUT, err
    assert expected in err and "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, the input untouched


def devices_that_cannot_work() -> list[str]:
    import torch

    cuda = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"  # absent GPU, or one too many
    names = ["foo", cuda, "cuda:0" if not torch.cuda.is_available() else "cuda:99", "meta"]
    if not torch.backends.mps.is_available():
        names.append("mps")
    return names


@pytest.mark.parametrize("device", devices_that_cannot_work())
def test_device_that_cannot_work_exits_2_before_loading(tmp_path, capsys, device):
    code = main(["--video", str(DEMO_VIDEO), "--audio", str(DEMO_AUDIO), "--output", str(tmp_path / "o.mp4"),
                 "--checkpoints", str(tmp_path), "--device", device])  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_INPUT, err
    assert "Traceback" not in err and "latentsync_unet.pt" not in err
    assert repr(device) in err or repr(device.split(":")[0]) in err
    assert len(err.strip().splitlines()) == 1


def test_dtype_without_kernels_on_the_device_exits_2(tmp_path, capsys, monkeypatch):
    import torch

    real_group_norm = torch.nn.functional.group_norm

    def group_norm(x, *args, **kwargs):  # fault injection: a PyTorch build without half-precision CPU GroupNorm
        if x.dtype == torch.float16:
            raise RuntimeError("\"GroupNorm\" not implemented for 'Half'")
        return real_group_norm(x, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "group_norm", group_norm)
    code = main(["--video", str(DEMO_VIDEO), "--audio", str(DEMO_AUDIO), "--output", str(tmp_path / "o.mp4"),
                 "--checkpoints", str(tmp_path), "--device", "cpu", "--dtype", "float16"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_INPUT and "float16 does not run on cpu" in err and "not implemented for 'Half'" in err


@pytest.mark.parametrize("case", ["video without picture", "audio without sound", "not a media file"])
def test_bad_input_is_reported_before_missing_weights(tmp_path, capsys, case):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    video, audio, expected = {
        "video without picture": (DEMO_AUDIO, DEMO_AUDIO, "has no video stream"),
        "audio without sound": (DEMO_VIDEO, DEMO_VIDEO, "has no audio track"),  # the demo video is silent
        "not a media file": (text, DEMO_AUDIO, "not a readable video or audio file"),
    }[case]
    code = main(["--video", str(video), "--audio", str(audio), "--output", str(tmp_path / "o.mp4"),
                 "--checkpoints", str(tmp_path), "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_INPUT, err
    assert expected in err and "latentsync_unet.pt" not in err and "Traceback" not in err
    assert str(tmp_path) not in err and "@ 0x" not in err and "ffprobe" not in err  # plain words only


# ------------------------------------------------------------------------------------------------ signals


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background test runner may pass SIGINT down as ignored


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_during_lip_sync_exits_cleanly_and_removes_temporary_files(tmp_path, tiny_checkpoints, signum, code):
    inputs, tmpdir, out_dir = tmp_path / "in", tmp_path / "tmp", tmp_path / "out"
    for folder in (inputs, tmpdir, out_dir):
        folder.mkdir()
    video = inputs / "v.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(DEMO_VIDEO), "-frames:v", "10", str(video)], check=True)
    audio = inputs / "a.wav"  # 2 s for 10 frames: the video loops, so a 25 fps copy sits in the temporary folder
    media.write_wav(audio, np.resize(media.load_audio(DEMO_AUDIO), 2 * media.SAMPLE_RATE))
    cmd = [sys.executable, "-m", "latentsync", "--video", str(video), "--audio", str(audio),
           "--output", str(out_dir / "o.mp4"), "--steps", "20", "--checkpoints", str(tiny_checkpoints),
           "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(tmpdir), "LATENTSYNC_CACHE_DIR": str(tmp_path / "face-tracks")}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_sigint)  # fmt: skip
    stderr = bytearray()
    reader = threading.Thread(target=lambda: [stderr.extend(b) for b in iter(lambda: proc.stderr.read1(4096), b"")])
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while b"lip sync" not in stderr:  # tqdm's bar for the generation stage
            assert proc.poll() is None, f"the CLI ended before the lip-sync stage: {stderr.decode(errors='replace')}"
            assert time.monotonic() < deadline, "no lip-sync progress within 5 minutes"
            time.sleep(0.05)
        # What a kill at this moment would leave behind: the 25 fps copy and the output's partial file.
        assert list(tmpdir.glob("latentsync-*/frames.mp4")) and list(out_dir.glob(".o.*"))
        proc.send_signal(signum)
        returncode = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
    text = stderr.decode(errors="replace")
    assert returncode == code, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert f"interrupted ({signal.Signals(signum).name})" in text.strip().splitlines()[-1]
    assert "wrote" not in proc.stdout.read().decode()
    assert list(tmpdir.glob("latentsync-*")) == []
    assert list(out_dir.iterdir()) == []
