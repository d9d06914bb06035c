"""The Gradio Space: a face video and a speech clip in, the lip-synced video out (LatentSync 1.5 / 1.6).

``python app.py`` serves it on http://127.0.0.1:7860. ``--smoke`` (or ``LATENTSYNC_SMOKE=1``) uses tiny
random models that need no download (outputs are then NOT lip-synced); their faces are found with dlib, or
with ``--smoke-faces face_alignment`` (or ``LATENTSYNC_SMOKE_FACES=face_alignment``) with the production
landmark backend on random weights. ``MAX_SECONDS``: longest input (default 60 s, 0 = no limit);
``LATENTSYNC_CHECKPOINTS``: a local weights folder instead of the Hub.

The UI is a thin layer: ``lipsync`` (the ``/lipsync`` API endpoint) checks the inputs, then calls the
one-line ``@spaces.GPU`` wrapper, which runs the package's pipeline. ``import app`` builds the page but
loads no model and starts no server. On ZeroGPU the GPU step runs in a forked worker, so the models are
built in the main process before launch (ZeroGPU moves them onto the GPU for each call); elsewhere they are
built by the first request and reused.
"""

import spaces  # noqa: I001 -- first: on ZeroGPU it must be imported before torch initialises CUDA

import argparse
import functools
import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import torch
from gradio.exceptions import InvalidPathError

from latentsync import CheckpointError, InputError
from latentsync.app_support import DEFAULT_VERSION, MAX_SEED, VERSIONS, AppSettings, LipSyncJob, ServedResults
from latentsync.app_support import PipelineCache, StageProgress, check_inputs, describe_result, make_options
from latentsync.app_support import first_frame, mark_point, on_zero_gpu, random_seed, speaker_from_click
from latentsync.app_support import SMOKE_FACE_BACKENDS, api_rules, check_api_values, limit_malloc_arenas
from latentsync.app_support import release_memory, stop_on_sigterm
from latentsync.app_support import AUTOMATIC, GPU_SECONDS_MIN, ONE_FACE, TIMELINE, faces_preview, speakers_value
from latentsync import media
from latentsync.media import H264_CRF
from latentsync.inference.pipeline import DEFAULT_GUIDANCE, DEFAULT_RESTORE_STRENGTH, DEFAULT_SEED, DEFAULT_STEPS, LARGEST_FACE

ASSETS = Path(__file__).resolve().parent / "assets"
EXAMPLES = [[str(ASSETS / "demo_video.mp4"), str(ASSETS / "demo_speech.wav")]]

# Sliders: the reference app's ranges (guidance 1.0-3.0 by 0.1, steps 10-50). Smoke mode lets steps go
# down to 1 so that quick checks and the browser test finish fast; real weights blur below ~10 steps.
GUIDANCE_MIN, GUIDANCE_MAX, GUIDANCE_STEP = 1.0, 3.0, 0.1
STEPS_RANGE, SMOKE_STEPS_RANGE = (10, 50), (1, 50)
GPU_CONCURRENCY = 1  # requests on the GPU at once per replica; the others wait in the queue
QUEUE_SIZE = 32  # requests beyond this many waiting are turned away ("queue full") rather than stalled
CACHE_CLEANUP = (3600, 3600)  # hourly, delete uploads and results older than an hour from gradio's cache
RESTORE_STRENGTH_MIN, RESTORE_STRENGTH_STEP = 0.05, 0.05  # the slider's range starts above 0 (0 would be "off")
CRF_RANGE = (0, 35)  # 0 lossless; beyond ~35 talking heads turn visibly blocky
LENGTH_MODE_LABELS = {  # LipSyncOptions.length_mode -> the radio's words
    "pingpong": "Follow the audio: play the video back and forth",
    "loop": "Follow the audio: loop the video",
    "freeze": "Follow the audio: hold the last frame",
    "video": "Follow the video: cut or pad the audio with silence",
}
SPEAKER_MODE_LABELS = {  # latentsync.app_support.SPEAKER_MODES -> the "Who speaks" radio's words
    ONE_FACE: "One face (click on it)",
    TIMELINE: "Timeline",
    AUTOMATIC: "Automatic (who speaks in the original)",
}
SPEAKER_VIEW_LABEL = "Click the face that should speak (first frame)"
FACES_VIEW_LABEL = "Every face, numbered (first frame)"
TIMELINE_COLUMNS = ["start", "end", "speaker"]  # the timeline editor's columns, as the timeline's CSV header
# Blank rows the editor starts with (more: a cell's menu, "Add row below"); blank rows are left out of the timeline.
TIMELINE_ROWS = 4

# The only mutable globals: models built on first use per version, then reused by every request, and the results
# served so far (removed on shutdown; the hourly sweep removes older ones while the app runs).
PIPELINES = PipelineCache()
RESULTS = ServedResults()
API_PARAMETERS = ["video", "audio", "version", "steps", "guidance_scale", "seed", "randomize_seed", "score_sync",
                  "speaker", "length_mode", "native_fps", "crf", "photo", "faster", "seamless_audio_windows",
                  "restore", "restore_strength", "speakers"]  # /lipsync's values, in order
NOT_UPLOADED = ("A file in this request was not uploaded to this app: upload it first (POST /gradio_api/upload, or "
                "handle_file with gradio_client) and send the path that returns.")  # fmt: skip

logger = logging.getLogger("latentsync.app")

CSS = "#smoke-banner {border: 2px solid #d97706; border-radius: 8px; padding: 4px 12px; background: #fef3c7}"

# The first paragraph says what to give and what comes back; what the model is comes below the app (ABOUT).
INTRO = """
# LatentSync lip sync

Upload a video of a face (or a photo) and a speech recording: you get the same video back, as long as the speech,
with the mouth re-drawn to say it.
"""

ABOUT = f"""
**How it works:** [LatentSync](https://github.com/bytedance/LatentSync) is ByteDance's audio-conditioned
latent-diffusion model: a Stable Diffusion VAE and a 3D UNet that, guided by Whisper features of the audio, paints
the lower half of each aligned face, which is then pasted back into the frame. A video shorter than the speech is
played back and forth; a photo becomes a still video. A result stays downloadable for
{CACHE_CLEANUP[1] / 3600:g} to {sum(CACHE_CLEANUP) / 3600:g} hours (the cache is swept every
{CACHE_CLEANUP[0] / 3600:g} h), and no longer than the app runs.
"""

TIPS = """
**Tips for good results:** one clearly visible, roughly frontal face (with several, open "Speaker" and
click the one that talks; for a conversation, choose "Timeline" or "Automatic" there), not too small (at
least ~100 px wide), mouth not covered; clear speech without music; 25 fps footage works best (other rates are
resampled). Version 1.6 works on 512 px faces (sharper, about 4x slower), 1.5 on 256 px faces. More steps:
slightly sharper, slower.
"""

CREDITS = """
**Models and licences:** [LatentSync 1.5 / 1.6](https://huggingface.co/ByteDance/LatentSync-1.5) by
ByteDance (Apache-2.0) · [Whisper](https://github.com/openai/whisper) tiny by OpenAI (MIT) ·
[sd-vae-ft-mse](https://huggingface.co/stabilityai/sd-vae-ft-mse) by Stability AI (MIT) · optional face
restoration: [GFPGAN v1.4](https://github.com/TencentARC/GFPGAN) by Tencent ARC (Apache-2.0). This app is an
independent re-implementation (Apache-2.0), not affiliated with ByteDance. Demo face: NASA portrait (public
domain).
"""

SMOKE_BANNER = (
    "⚠️ **Smoke-test mode**: tiny random models stand in for the real weights. Outputs are NOT lip-synced; "
    "this mode only checks that the app works end to end."
)
# With --smoke-faces face_alignment: the random detector reports a face per 128 px anchor, wherever faces are.
SMOKE_FACES_NOTE = " Faces: the production backend (face-alignment) on random weights: arbitrary face boxes."


# ------------------------------------------------------------------------------------------ the GPU step


def _sentence(message: str) -> str:
    """A message as a sentence: ending with a full stop, starting with a capital ("The parameter steps must..." for
    one that starts with a parameter's name); one that starts with a file name keeps its first word as given."""
    message = message.strip()
    if message and message[-1] not in ".!?":
        message += "."
    first_word = message.partition(" ")[0]
    if first_word in API_PARAMETERS:  # "steps must be ...": name the parameter as such
        return f"The parameter {message}"
    if re.fullmatch(r"[a-z_]+[,:]?", first_word):  # a plain word ("speaker:" too); not "clip.mp4"
        return message[:1].upper() + message[1:]
    return message


@contextmanager
def shown_to_user() -> Iterator[None]:
    """Turn the package's errors into ``gr.Error`` messages a person can act on (a client receives them)."""
    try:
        yield
    except InputError as err:
        raise gr.Error(_sentence(str(err)), title="Please check the input", print_exception=False) from err
    except CheckpointError as err:
        raise gr.Error(f"The model files could not be loaded. {err}", title="Model files missing") from err
    except torch.OutOfMemoryError as err:
        message = "The GPU ran out of memory: try version 1.5 or a shorter clip."
        raise gr.Error(message, title="Out of memory") from err


def gpu_duration(job: LipSyncJob, progress: gr.Progress | None = None) -> int:
    """ZeroGPU calls this with the wrapper's own arguments to know how long to reserve the GPU."""
    return job.gpu_seconds()


@spaces.GPU(duration=gpu_duration)  # a no-op off ZeroGPU (spaces 0.51 returns the function unchanged)
def lipsync_on_gpu(job: LipSyncJob, progress: gr.Progress | None = None):
    with shown_to_user():  # in the wrapper: on ZeroGPU only gr.Error messages cross the worker boundary
        return PIPELINES.run(job, StageProgress(progress))


@spaces.GPU(duration=GPU_SECONDS_MIN)  # the face backend is a GPU model: on ZeroGPU it runs only inside a GPU call
def faces_on_gpu(version: str, smoke: bool, smoke_faces: str, path: str):
    """The speaker panel's numbered faces (:func:`faces_preview`), with the face backend of ``version``'s pipeline."""
    with shown_to_user():
        return faces_preview(PIPELINES.get(version, smoke, smoke_faces).face_backend, path)


def releasing_memory(handler: Callable) -> Callable:
    """Run ``handler``, then free what its request left (:func:`release_memory`), also when it raised."""

    @functools.wraps(handler)  # gradio reads the API's parameters and docs through __wrapped__
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        finally:
            release_memory()

    return wrapper


class CheckedBlocks(gr.Blocks):
    """``gr.Blocks`` whose refusals before an endpoint runs are sentences a client can act on.

    gradio checks a call's values itself before the endpoint runs, with messages that do not say which parameter
    ("Value 0 is less than minimum value 1.") or with none at all (``{"error": null}`` for too few values, or a file
    that was not uploaded). Here each endpoint's raw values are checked first (``api_checks``: api_name -> check
    raising :class:`InputError`), and a file outside the uploads is refused with :data:`NOT_UPLOADED`. Each refusal
    is one line in the server's log, not a traceback."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.api_checks: dict[str, Callable[[list], None]] = {}

    async def preprocess_data(self, block_fn, inputs, *args, **kwargs):
        try:
            check = self.api_checks.get(block_fn.api_name)
            if check is not None:
                check(inputs)
            return await super().preprocess_data(block_fn, inputs, *args, **kwargs)
        except InputError as err:
            logger.info("refused a call to /%s: %s", block_fn.api_name, err)
            raise gr.Error(_sentence(str(err)), title="Please check the input", print_exception=False) from None
        except InvalidPathError as err:
            logger.info("refused a call to /%s: %s", block_fn.api_name, err)
            raise gr.Error(NOT_UPLOADED, title="File not uploaded", print_exception=False) from None


# ------------------------------------------------------------------------------------------ the page


def build_demo(settings: AppSettings) -> gr.Blocks:
    """The page and its one API endpoint, ``/lipsync``; queued, so parallel requests wait their turn."""
    steps_min, steps_max = SMOKE_STEPS_RANGE if settings.smoke else STEPS_RANGE
    limit = f"up to {settings.max_seconds:g} s" if settings.max_seconds else "any length"
    with CheckedBlocks(title="LatentSync lip sync", delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(INTRO)
        if settings.smoke:
            note = SMOKE_FACES_NOTE if settings.smoke_faces == "face_alignment" else ""
            gr.Markdown(SMOKE_BANNER + note, elem_id="smoke-banner")
        with gr.Row():
            with gr.Column():
                with gr.Tabs():
                    with gr.Tab("Video"):
                        video_in = gr.Video(
                            label=f"Face video ({limit})", sources=["upload", "webcam"], elem_id="video-in"
                        )
                    with gr.Tab("Photo"):
                        # PNG: gradio re-saves uploads in this format, and the default WebP would be lossy.
                        photo_in = gr.Image(
                            label="Or a photo of a face (PNG, JPEG, WebP; used when no video is given)",
                            sources=["upload", "webcam"], type="filepath", format="png", elem_id="photo-in",
                        )  # fmt: skip
                audio_in = gr.Audio(
                    label=f"Driving speech ({limit})", sources=["upload", "microphone"], type="filepath",
                    elem_id="audio-in",
                )  # fmt: skip
                with gr.Accordion("Speaker (for videos with several faces)", open=False):
                    speakers_mode = gr.Radio(
                        [(label, mode) for mode, label in SPEAKER_MODE_LABELS.items()], value=ONE_FACE,
                        label="Who speaks", elem_id="speakers-mode",
                        info="One face all along; or a conversation: each face lip-synced only during its turns, "
                             "from a timeline you enter or found in the video's own soundtrack.",
                    )  # fmt: skip
                    speaker_view = gr.Image(
                        label=SPEAKER_VIEW_LABEL, interactive=False,
                        elem_id="speaker-view",
                    )  # fmt: skip
                    faces_note = gr.Markdown("", visible=False, elem_id="speaker-faces-note")
                    with gr.Row() as one_face_row:
                        speaker = gr.Textbox(
                            LARGEST_FACE, label="Speaker", elem_id="speaker", scale=3,
                            info="'largest', or the point x,y you clicked (pixels; fractions like 0.3,0.4 work).",
                        )  # fmt: skip
                        largest = gr.Button("Largest face", elem_id="speaker-largest", scale=1)
                    timeline = gr.Dataframe(
                        [[None, None, ""]] * TIMELINE_ROWS, headers=TIMELINE_COLUMNS,
                        datatype=["number", "number", "str"], type="array", column_count=len(TIMELINE_COLUMNS),
                        interactive=True, visible=False,
                        label="Timeline: one row per turn (start and end in seconds, speaker = the face's number "
                              "in the picture, or a point x,y on it)", elem_id="speakers-timeline",
                    )  # fmt: skip
                    # The /lipsync value that the choice above and the timeline make (set when "Lip sync" is clicked).
                    speakers = gr.Textbox("", visible=False, elem_id="speakers")
                with gr.Accordion("Length, frame rate and quality", open=False):
                    length_mode = gr.Radio(
                        [(label, mode) for mode, label in LENGTH_MODE_LABELS.items()], value="pingpong",
                        label="When the speech and the video differ in length",
                    )  # fmt: skip
                    native_fps = gr.Checkbox(
                        False, label="Keep the video's own frame rate",
                        info="e.g. 30 or 60 fps instead of 25: every original frame kept, the mouth generated "
                             "for each frame's time (face analysis takes longer).",
                    )  # fmt: skip
                    crf = gr.Slider(
                        *CRF_RANGE, value=H264_CRF, step=1, label="Output quality (H.264 CRF)",
                        info=f"Lower is better and larger; {H264_CRF} is visually lossless, 0 lossless.",
                    )  # fmt: skip
                with gr.Accordion("Face restoration", open=False):
                    restore = gr.Checkbox(
                        False, label="Sharpen the mouth (GFPGAN v1.4 face restorer)", elem_id="restore",
                        info="Restores the generated lower face only, with fixed noise so the lips do not "
                             "flicker; eyes, hair and background keep their pixels. A little slower.",
                    )  # fmt: skip
                    restore_strength = gr.Slider(
                        RESTORE_STRENGTH_MIN, 1.0, value=DEFAULT_RESTORE_STRENGTH, step=RESTORE_STRENGTH_STEP,
                        label="Restoration strength", elem_id="restore-strength",
                        info="How much of the restored face is blended in: 1 takes it wholly.",
                    )  # fmt: skip
                with gr.Accordion("Advanced settings", open=False):
                    version = gr.Radio(
                        list(VERSIONS), value=DEFAULT_VERSION, label="Model version",
                        info="1.5: 256 px faces, faster. 1.6: 512 px faces, sharper, ~4x slower.",
                    )  # fmt: skip
                    steps = gr.Slider(
                        steps_min, steps_max, value=DEFAULT_STEPS, step=1, precision=0,
                        label="Inference steps",
                        info="Denoising steps: more is slightly sharper and proportionally slower.",
                        elem_id="steps",
                    )  # fmt: skip
                    guidance = gr.Slider(
                        GUIDANCE_MIN, GUIDANCE_MAX, value=DEFAULT_GUIDANCE, step=GUIDANCE_STEP,
                        label="Guidance scale", elem_id="guidance",
                        info="How strongly the mouth follows the audio; 1.0 turns guidance off (twice as "
                             "fast), too high distorts the mouth.",
                    )  # fmt: skip
                    with gr.Row():
                        seed = gr.Number(
                            DEFAULT_SEED, label="Seed", precision=0, minimum=0, maximum=MAX_SEED,
                            info="Same inputs, settings and seed give the same video.",
                        )  # fmt: skip
                        randomize = gr.Checkbox(
                            False, label="Random seed", info="A new seed each run (shown in the seed box)."
                        )
                    faster = gr.Checkbox(
                        True, label="Faster (step caching)", elem_id="faster",
                        info="Reuses the UNet's deep layers on 2 of every 3 steps, as the official app does: about "
                             "2x faster, nearly the same result.",
                    )  # fmt: skip
                    seamless_audio = gr.Checkbox(
                        True, label="Seamless audio past 30 s", elem_id="seamless-audio",
                        info="Overlapping, cross-faded Whisper windows, so the mouth does not change every 30 s of "
                             "speech; untick for the official back-to-back windows (same result up to 30 s).",
                    )  # fmt: skip
                    score_sync = gr.Checkbox(
                        False, label="Compute Sync-C scores (before → after)",
                        info="SyncNet lip-sync confidence of the input and of the result (higher is better); "
                             "takes a little longer.",
                    )  # fmt: skip
                run = gr.Button("Lip sync", variant="primary", elem_id="run")
            with gr.Column():
                video_out = gr.Video(
                    label="Lip-synced video", format="mp4", interactive=False, elem_id="video-out"
                )
                summary = gr.Textbox(label="What was done", lines=4, interactive=False, elem_id="summary")
        # Not cached: caching would run the model at start-up (eagerly) or on the first click (lazily) and
        # spend ZeroGPU quota on it, and a cached video would ignore the advanced settings. A click only
        # fills the inputs.
        gr.Examples(
            EXAMPLES, inputs=[video_in, audio_in], label="Example: click to fill the inputs",
            example_labels=["NASA portrait + a short English sentence"], cache_examples=False,
            api_visibility="private",
        )  # fmt: skip
        gr.Markdown(TIPS)
        gr.Markdown(ABOUT)
        gr.Markdown(CREDITS)

        @releasing_memory
        def lipsync(
            video: str, audio: str, version: str = DEFAULT_VERSION, steps: int = DEFAULT_STEPS,
            guidance_scale: float = DEFAULT_GUIDANCE, seed: int = DEFAULT_SEED, randomize_seed: bool = False,
            score_sync: bool = False, speaker: str = LARGEST_FACE, length_mode: str = "pingpong",
            native_fps: bool = False, crf: int = H264_CRF, photo: str | None = None, faster: bool = True,
            seamless_audio_windows: bool = True, restore: bool = False,
            restore_strength: float = DEFAULT_RESTORE_STRENGTH, speakers: str = "",
            progress=gr.Progress(),  # noqa: B008 -- how gradio passes a tracker
        ):  # fmt: skip
            """Re-generate the mouth in a face video so that it matches the speech (LatentSync).

            Args:
                video: face video (mp4, mov, webm...) with one visible, roughly frontal face
                audio: driving speech (wav, mp3, m4a..., or a video with sound); sets the output length
                version: model version, "1.5" (256 px faces, faster) or "1.6" (512 px faces, sharper)
                steps: DDIM denoising steps, 10 to 50 (1 to 50 in smoke mode; default 20)
                guidance_scale: classifier-free guidance on the audio, 1.0 to 3.0 (default 1.5; 1.0 = off)
                seed: random seed, 0 to 4294967295 (default 1247); the same inputs, settings and seed give the same
                    video
                randomize_seed: if true, ignore seed and draw a new one (returned as the third output)
                score_sync: if true, also compute SyncNet Sync-C / Sync-D of the input and of the output
                speaker: "largest" (default), or "x,y" on the speaking face in the first frame (pixels, or
                    fractions of the width and height when both are <= 1)
                length_mode: "pingpong" (default), "loop" or "freeze" (output as long as the audio), or "video"
                    (output as long as the video, the audio cut or padded with silence)
                native_fps: if true, output at the video's own frame rate instead of 25 fps
                crf: output quality, H.264 CRF 0 (lossless) to 35 (default 18, visually lossless)
                photo: a still image (PNG, JPEG, WebP) of a face, used when no video is given
                faster: step caching as the official app (DeepCache, interval 3): about 2x faster, nearly the
                    same result (default true); false computes every step in full
                seamless_audio_windows: overlapping, cross-faded 30-s Whisper windows for speech longer than 30 s,
                    so the mouth does not change every 30 s (default true); false uses the official back-to-back
                    windows (up to 30 s both are the same)
                restore: if true, sharpen the generated mouth with the GFPGAN v1.4 face restorer (fixed noise,
                    no flicker; eyes, hair and background untouched); default false
                restore_strength: how much of the restored face is blended in, above 0 to 1 (default 0.5)
                speakers: a conversation, each face lip-synced only during its turns: "" (default: one face, see
                    speaker), "auto" (who speaks when, found in the video's own soundtrack), or a timeline as text,
                    CSV rows "start,end,speaker" or JSON (docs/conversations.md); a speaker is a face number or a
                    point "x,y" on the face. Not a file name: send the file's contents
            Returns:
                the lip-synced MP4, a short text of what was done, the seed used
            """
            video = video or photo
            with shown_to_user():
                video_seconds, audio_seconds = check_inputs(video, audio, settings.max_seconds)
                used_seed = random_seed() if randomize_seed else seed
                options = make_options(steps, guidance_scale, used_seed, score_sync, speaker, length_mode,
                                       native_fps, crf, faster, seamless_audio_windows, restore,
                                       restore_strength, speakers)  # fmt: skip
                video_fps = media.probe(video).fps or media.VIDEO_FPS
            with tempfile.TemporaryDirectory(prefix="latentsync-app-") as workdir:  # this request's own
                job = LipSyncJob(
                    video=video, audio=audio, output=str(Path(workdir) / "lipsync.mp4"), version=version,
                    options=options, video_seconds=video_seconds, audio_seconds=audio_seconds,
                    smoke=settings.smoke, video_fps=video_fps, smoke_faces=settings.smoke_faces,
                )  # fmt: skip
                outcome = lipsync_on_gpu(job, progress)
                # Hand the file to gradio's cache now: gradio would copy it there after we return, when
                # this folder is gone. It is served from there and deleted with the rest (delete_cache).
                served = RESULTS.add(video_out.move_resource_to_block_cache(outcome.result.output))
            return served, describe_result(outcome.result, job, outcome.faces_in_first_frame), used_seed

        def show_face(video: str | None, photo: str | None, mode: str, version: str):
            """The speaker panel for a new input or choice: one face: the first frame, unmarked, and the speaker reset
            to the largest face; a conversation: every face there boxed and numbered (the first 2 s tracked)."""
            one = mode == ONE_FACE
            label = SPEAKER_VIEW_LABEL if one else FACES_VIEW_LABEL
            panel = [gr.update(visible=one), gr.update(visible=mode == TIMELINE)]
            path = video or photo
            if not path:
                return gr.update(value=None, label=label), LARGEST_FACE, gr.update(value="", visible=False), *panel
            if one:
                with shown_to_user():
                    view = gr.update(value=first_frame(path), label=label)
                return view, LARGEST_FACE, gr.update(value="", visible=False), *panel
            preview = faces_on_gpu(version, settings.smoke, settings.smoke_faces, path)
            view = gr.update(value=preview.image, label=label)
            return view, LARGEST_FACE, gr.update(value=preview.note, visible=True), *panel

        def pick_speaker(video: str | None, photo: str | None, mode: str, event: gr.SelectData):
            path = video or photo
            if mode != ONE_FACE:  # the numbered picture: faces are named by number in the timeline
                return gr.skip(), gr.skip()
            if not path:
                return None, LARGEST_FACE
            point = speaker_from_click(event.index)
            x, y = (int(v) for v in point.split(","))
            with shown_to_user():
                return mark_point(first_frame(path), x, y), point

        def speakers_for_run(mode: str, rows: list | None) -> str:
            """The one ``speakers`` value of the call from "Who speaks" and the timeline editor (checked)."""
            with shown_to_user():
                return speakers_value(mode, rows)

        panel_inputs = [video_in, photo_in, speakers_mode, version]
        panel = {"outputs": [speaker_view, speaker, faces_note, one_face_row, timeline], "api_visibility": "private",
                 "show_progress": "minimal"}  # fmt: skip
        video_in.change(show_face, panel_inputs, **panel)
        photo_in.change(show_face, panel_inputs, **panel)
        largest.click(show_face, panel_inputs, **panel)
        speakers_mode.change(show_face, panel_inputs, **panel)
        speaker_view.select(pick_speaker, [video_in, photo_in, speakers_mode], outputs=[speaker_view, speaker],
                            api_visibility="private", show_progress="hidden")  # fmt: skip

        rules = api_rules((steps_min, steps_max), (GUIDANCE_MIN, GUIDANCE_MAX), CRF_RANGE)
        demo.api_checks["lipsync"] = lambda values: check_api_values(API_PARAMETERS, values, rules)
        # Two steps: the panel's choice and rows become the `speakers` value, then the pipeline call (the API).
        run.click(
            speakers_for_run, [speakers_mode, timeline], [speakers], api_visibility="private", show_progress="hidden"
        ).success(
            lipsync, inputs=[video_in, audio_in, version, steps, guidance, seed, randomize, score_sync, speaker,
                             length_mode, native_fps, crf, photo_in, faster, seamless_audio, restore,
                             restore_strength, speakers],
            outputs=[video_out, summary, seed], api_name="lipsync", concurrency_limit=GPU_CONCURRENCY,
            concurrency_id="gpu",
            # The seed box is an output too (it shows the seed used), but no progress bar or error badge there.
            show_progress_on=[video_out, summary],
        )  # fmt: skip
    demo.queue(max_size=QUEUE_SIZE)
    return demo


def launch_options() -> dict:
    """Look-and-feel arguments of ``launch()`` (gradio 6 moved ``theme`` and ``css`` there from Blocks)."""
    return {"theme": gr.themes.Soft(primary_hue="indigo"), "css": CSS}


demo = build_demo(AppSettings.from_env())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the LatentSync Gradio app.")
    parser.add_argument(
        "--smoke", action="store_true",
        help="tiny random models: no download, outputs NOT lip-synced (same as LATENTSYNC_SMOKE=1)",
    )  # fmt: skip
    parser.add_argument(
        "--smoke-faces", choices=SMOKE_FACE_BACKENDS, default=None,
        help="with --smoke, the landmark backend: dlib (default; finds real faces) or face_alignment (the "
             "production backend, random weights) (same as LATENTSYNC_SMOKE_FACES)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    # What the media tools said about a bad upload goes to the server's log, never to the user (latentsync.media).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = AppSettings.from_env(smoke=args.smoke, smoke_faces=args.smoke_faces)
    limit_malloc_arenas()  # before the server's threads: flat memory over thousands of requests
    app = build_demo(settings) if args.smoke or args.smoke_faces else demo
    stop_on_sigterm()  # SIGTERM (docker stop, systemd) cleans up as Ctrl-C does
    try:
        if on_zero_gpu():  # build the models before the fork: ZeroGPU moves them to the GPU inside each call
            for version in VERSIONS:
                PIPELINES.get(version, settings.smoke, settings.smoke_faces)
        app.launch(**launch_options())
    finally:
        PIPELINES.close()  # removes the smoke-mode checkpoints folder
        RESULTS.remove_all()  # and the results still downloadable (gradio's sweep only removes older ones)


if __name__ == "__main__":
    main()
