"""The app in a real browser: headless Chromium (Debian's) drives the smoke-mode page as a person would."""

from __future__ import annotations

import os
import re
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # set before gradio is imported: no calls home

import pytest

from latentsync.app_support import AppSettings

from .conftest import REPO_ROOT
from .test_app import serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
# The machine has no network: without these, Chromium keeps trying (and failing) to reach Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOT = REPO_ROOT / "test-artifacts" / "app_browser.png"
RUN_TIMEOUT_MS = 300_000  # the demo clip (98 frames) through the tiny models on 2 busy CPU cores


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with pytest.MonkeyPatch.context() as patch:  # face tracks go to a test folder, not the user's cache
        patch.setenv("LATENTSYNC_CACHE_DIR", str(tmp_path_factory.mktemp("face-tracks")))
        with serve(AppSettings(smoke=True)) as url:
            yield url


def test_example_to_lipsynced_video_in_chromium(page_url):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(page_url, wait_until="domcontentloaded")
            banner = page.locator("#smoke-banner")
            expect(banner).to_contain_text("Outputs are NOT lip-synced", timeout=60_000)

            # The example fills both inputs (the audio player shows a download link to the file).
            page.get_by_text("NASA portrait + a short English sentence").click()
            video_in, audio_link = page.locator("#video-in video"), page.locator("#audio-in a[href]").first
            expect(video_in).to_have_attribute("src", re.compile(r"demo_video\.mp4$"), timeout=30_000)
            expect(audio_link).to_have_attribute("href", re.compile(r"demo_speech\.wav$"), timeout=30_000)

            # The speaker picker: the first frame appears; a click marks a point; "Largest face" resets it.
            page.get_by_text("Speaker (for videos with several faces)").click()
            picture = page.locator("#speaker-view img")
            expect(picture).to_be_visible(timeout=30_000)
            speaker = page.locator("#speaker textarea, #speaker input").first
            picture.click(position={"x": 40, "y": 30})
            expect(speaker).to_have_value(re.compile(r"^\d+,\d+$"), timeout=30_000)
            x, y = map(int, speaker.input_value().split(","))
            assert 0 <= x < 320 and 0 <= y < 320 and (x, y) != (0, 0)  # in the frame's own pixels
            page.locator("#speaker-largest").click()
            expect(speaker).to_have_value("largest", timeout=30_000)

            # The quickest settings: the fewest steps, guidance off.
            page.get_by_text("Advanced settings").click()
            for slider, value in (("#steps", "1"), ("#guidance", "1")):
                set_number(page.locator(f"{slider} input[type=number]"), value)

            page.locator("#run").click()
            video_out = page.locator("#video-out video")
            expect(video_out).to_have_attribute("src", re.compile(r"lipsync\.mp4$"), timeout=RUN_TIMEOUT_MS)
            summary = page.locator("#summary textarea")
            expect(summary).to_have_value(re.compile(r"^LatentSync 1\.5: 98 frames \(3\.92 s at 25 fps\)"))
            assert "Settings: 1 step, guidance 1, seed 1247." in summary.input_value()
            assert "NOT lip-synced" in summary.input_value()

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            expect(banner).to_be_visible()
        finally:
            browser.close()


def test_conversation_timeline_in_chromium(page_url, tmp_path):
    """The speaker panel: "Timeline" numbers both faces of the two-face clip, the table's rows become the call's
    ``speakers`` value, and the summary lists the turns."""
    from playwright.sync_api import expect, sync_playwright

    from tests.two_faces import write_two_face_video

    from .test_app import speech

    clip = write_two_face_video(tmp_path / "two_faces.mp4")
    audio = speech(tmp_path / "speech.wav", 0.32)  # 8 output frames
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(page_url, wait_until="domcontentloaded")
            expect(page.locator("#smoke-banner")).to_be_visible(timeout=60_000)
            page.locator("#video-in input[type=file]").set_input_files(str(clip))
            page.locator("#audio-in input[type=file]").set_input_files(str(audio))
            page.get_by_text("Speaker (for videos with several faces)").click()
            page.locator("#speakers-mode").get_by_text("Timeline", exact=True).click()
            note = page.locator("#speaker-faces-note")
            expect(note).to_contain_text("Faces numbered in the first frame: 0, 1.", timeout=120_000)
            expect(page.locator("#speaker")).to_be_hidden()  # the one-face picker's box
            table = page.locator("#speakers-timeline")
            for row, values in enumerate((["0", "0.16", "0"], ["0.16", "0.32", "1"])):
                for column, value in enumerate(values):
                    table.locator(f"[data-testid=cell-{row}-{column}]").dblclick()
                    page.keyboard.press("Control+A")
                    page.keyboard.type(value)
                    page.keyboard.press("Enter")
            page.get_by_text("Advanced settings").click()
            for slider, value in (("#steps", "1"), ("#guidance", "1")):
                set_number(page.locator(f"{slider} input[type=number]"), value)
            page.locator("#run").click()
            summary = page.locator("#summary textarea")
            expect(summary).to_have_value(re.compile(r"^LatentSync 1\.5: 8 frames"), timeout=RUN_TIMEOUT_MS)
            lines = summary.input_value().splitlines()
            assert lines[1] == "Speaker turns from the timeline: 0.00-0.16 s face 0, 0.16-0.32 s face 1."
            assert lines[2] == "Settings: 1 step, guidance 1, seed 1247, speakers from a timeline."
        finally:
            browser.close()


def set_number(box, value: str, attempts: int = 5) -> None:
    """Type ``value`` into a slider's number box. Right after the accordion opens, Gradio may still write the
    slider's initial value over a fill (seen once in CI under load: the box went back to 20), so retry until it
    holds."""
    from playwright.sync_api import expect

    expect(box).to_be_editable(timeout=30_000)
    for _ in range(attempts - 1):
        box.fill(value)
        box.press("Enter")
        try:
            expect(box).to_have_value(value, timeout=2_000)
            return
        except AssertionError:
            continue
    box.fill(value)
    box.press("Enter")
    expect(box).to_have_value(value)
