"""A small raw corpus with one example of every case the stages handle, made with ffmpeg from the demo assets, and a
checkpoints folder with random weights in the official formats: for the tests and the benchmark."""

from __future__ import annotations

import json
import os
from pathlib import Path

from latentsync.data.ffmpeg import run_ffmpeg

DEMO_SECONDS = 4  # length of assets/demo_video.mp4
FACELESS_SECONDS = 2.5  # faceless tail of faceless.mp4: long enough (62 frames) to survive segmentation
SHORT_SECONDS = 1.2  # short.mp4: 30 frames, under the 48 a training clip needs

# Where each clip of the corpus ends up (stage -> reason), for the tests.
EXPECTED_DROPS = {
    "corrupt.mp4": ("check", "unreadable file"),
    "noaudio.mp4": ("check", "no audio stream"),
    "short.mp4": ("segment", "too short (< 48 frames)"),
    "two_faces.mp4": ("faces", "a frame with several faces"),
    "silent.mp4": ("sync", "silent audio"),
}


def _speech(assets: Path, seconds: float) -> list[str]:
    """ffmpeg input arguments: the demo speech looped and cut to ``seconds``."""
    return ["-stream_loop", "-1", "-t", f"{seconds}", "-i", str(assets / "demo_speech.wav")]


def build_corpus(folder: str | os.PathLike, assets: str | os.PathLike, copies: int = 1,
                 seconds: float = DEMO_SECONDS) -> list[Path]:  # fmt: skip
    """Write the corpus into ``folder`` (``copies`` > 1 repeats it in numbered sub-folders, for benchmarks).

    ``seconds``: length of each part (the demo video is cut to it; at least 48 frames = 1.92 s, at most 4 s): the
    hard cuts of cut.mp4 and faceless.mp4 are at frame ``seconds * 25``.
    """
    if not 1.92 <= seconds <= DEMO_SECONDS:
        raise ValueError(f"seconds must be in [1.92, {DEMO_SECONDS}], got {seconds}")
    folder, assets = Path(folder), Path(assets)
    video = str(assets / "demo_video.mp4")
    head = folder / ".demo_head.mp4"  # the demo video cut to `seconds` (removed at the end)
    folder.mkdir(parents=True, exist_ok=True)
    run_ffmpeg("-i", video, "-t", f"{seconds}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "16", str(head))
    video = str(head)
    enc = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"]
    first = folder / ("copy_000" if copies > 1 else "")
    first.mkdir(parents=True, exist_ok=True)
    made = []

    def out(name: str) -> str:
        (first / name).parent.mkdir(parents=True, exist_ok=True)
        made.append(first / name)
        return str(first / name)

    run_ffmpeg("-i", video, *_speech(assets, seconds), "-map", "0:v", "-map", "1:a", *enc, out("talk.mp4"))
    # A hard cut at frame 100: the demo, then the demo mirrored.
    run_ffmpeg("-i", video, *_speech(assets, 2 * seconds), "-filter_complex",
               "[0:v]split[a][b];[b]hflip[f];[a][f]concat=n=2:v=1:a=0[v]", "-map", "[v]", "-map", "1:a", *enc,
               out("cut.mp4"))  # fmt: skip
    # A cut to a scene without a face.
    run_ffmpeg("-i", video, "-f", "lavfi", "-t", f"{FACELESS_SECONDS}", "-i", "testsrc2=size=320x320:rate=25",
               *_speech(assets, seconds + FACELESS_SECONDS), "-filter_complex",
               "[0:v][1:v]concat=n=2:v=1:a=0[v]", "-map", "[v]", "-map", "2:a", *enc,
               out("faceless.mp4"))  # fmt: skip
    # A second face composited beside the first.
    run_ffmpeg("-i", video, *_speech(assets, seconds), "-filter_complex", "[0:v]split[a][b];[a][b]hstack[v]",
               "-map", "[v]", "-map", "1:a", *enc, out("two_faces.mp4"))  # fmt: skip
    run_ffmpeg("-i", video, "-f", "lavfi", "-t", f"{seconds}", "-i", "anullsrc=r=16000:cl=mono",
               "-map", "0:v", "-map", "1:a", *enc, out("silent.mp4"))  # fmt: skip
    run_ffmpeg("-i", video, *_speech(assets, SHORT_SECONDS), "-t", f"{SHORT_SECONDS}", "-map", "0:v", "-map", "1:a",
               *enc, out("short.mp4"))  # fmt: skip
    Path(out("corrupt.mp4")).write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 16)
    run_ffmpeg("-i", video, "-c", "copy", out("noaudio.mp4"))
    # Another frame rate and container, in a sub-folder (mirrored in the output).
    run_ffmpeg("-i", video, *_speech(assets, seconds), "-map", "0:v", "-map", "1:a", "-r", "30", *enc,
               out("sub/talk_30fps.mov"))  # fmt: skip
    for index in range(1, copies):
        target = folder / f"copy_{index:03d}"
        for source in [p for p in made if first in p.parents]:
            dest = target / source.relative_to(first)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, dest)
    head.unlink()
    return sorted(p for p in folder.rglob("*") if p.is_file())


def write_test_checkpoints(directory: str | os.PathLike, seed: int = 0, face_alignment: bool = False) -> Path:
    """A checkpoints folder for the data stages with random weights in the official formats: SyncNet v2
    (``auxiliary/syncnet_v2.model``), hyperIQA (``auxiliary/koniq_pretrained.pkl``); faces by dlib, or with
    ``face_alignment`` by the production backend with random weights in the Hub's formats (+180 MB; its detector
    reports a face per coarse 128-px anchor, so real faces are not found)."""
    import torch

    from latentsync.checkpoints import AUXILIARY, LOCAL_CONFIG_NAME, get_version
    from latentsync.models.hyperiqa import random_hyperiqa_state_dict
    from latentsync.tiny import write_random_syncnet_v2

    directory = Path(directory)
    write_random_syncnet_v2(directory / get_version("1.5").syncnet_v2.local_path, seed=seed)
    hyperiqa = directory / AUXILIARY["hyperiqa"].local_path
    hyperiqa.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_hyperiqa_state_dict(seed + 1), hyperiqa)
    face_backend = "dlib"
    if face_alignment:
        from latentsync.tiny import write_random_face_alignment

        write_random_face_alignment(directory / Path(get_version("1.5").face_alignment[0].local_path).parent, seed + 2)
        face_backend = "face_alignment"
    (directory / LOCAL_CONFIG_NAME).write_text(json.dumps({"face_backend": face_backend}))
    return directory
