"""Running the ffmpeg command-line tool for the data stages: argument lists, check=True, stderr in the error."""

from __future__ import annotations

import shutil
import subprocess

STDERR_TAIL = 1500  # characters of ffmpeg's stderr kept in an error message


def run_ffmpeg(*args: str) -> None:
    """Run ``ffmpeg -nostdin -v error -y ARGS``; raises RuntimeError with ffmpeg's stderr when it fails."""
    tool = shutil.which("ffmpeg")
    if tool is None:
        raise RuntimeError("`ffmpeg` was not found on PATH (Debian/Ubuntu: apt-get install ffmpeg)")
    try:
        subprocess.run([tool, "-nostdin", "-v", "error", "-y", *args], check=True, capture_output=True)
    except subprocess.CalledProcessError as err:
        stderr = err.stderr.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
        raise RuntimeError(f"ffmpeg failed (exit {err.returncode}): {stderr}") from err
