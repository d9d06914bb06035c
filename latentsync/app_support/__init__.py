"""What the Gradio Space (``app.py``) needs besides its widgets: settings, checks, GPU estimate, models.

``app.py`` builds the UI; this package holds the parts that can be tested without a browser or a server, and
it never imports gradio (``gr.Progress`` is passed in as a plain callable). Its modules: ``settings``,
``requests``, ``summary``, ``speakers``, ``server`` and ``api_values``; everything public is re-exported here:

* :class:`AppSettings`: the environment knobs (``MAX_SECONDS``, ``LATENTSYNC_SMOKE``,
  ``LATENTSYNC_SMOKE_FACES``).
* :func:`check_inputs`: cheap ffprobe checks before a GPU is requested (missing input, no sound, too long).
* :class:`LipSyncJob`: one request as plain, picklable data (ZeroGPU runs the GPU step in a forked worker),
  with its GPU-time estimate (:func:`gpu_seconds`).
* :class:`PipelineCache`: pipelines built on first use per (version, smoke, smoke_faces), then reused; the
  app's only mutable global.
* :class:`StageProgress`: the pipeline's ``(stage, done, total)`` callbacks as ``gr.Progress`` calls.
* :func:`describe_result`: the short text shown under the output video.
* :func:`speakers_value`, :func:`timeline_from_rows`, :func:`faces_preview`: the speaker panel for conversations
  ("Who speaks", the timeline editor, the first frame with every face numbered) as the one ``speakers`` value.
* :class:`ServedResults`, :func:`release_memory`, :func:`limit_malloc_arenas`: what keeps a long-running Space flat
  (results removed on shutdown, freed memory handed back to the OS after each request).
* :class:`Range`, :class:`Choices`, :class:`Speakers`, :func:`check_api_values`: the API's values checked with
  sentences that name the parameter and what it accepts (gradio's own checks do not say which parameter).
"""

from latentsync.app_support.settings import (  # noqa: F401
    DEFAULT_MAX_SECONDS,
    DEFAULT_VERSION,
    LENGTH_TOLERANCE_SECONDS,
    MAX_SECONDS_ENV,
    MAX_SEED,
    SMOKE_ENV,
    SMOKE_FACE_BACKENDS,
    SMOKE_FACES_ENV,
    VERSIONS,
    ZERO_GPU_ENV,
    AppSettings,
    make_options,
    on_zero_gpu,
    random_seed,
)
from latentsync.app_support.requests import (  # noqa: F401
    AUTO_SPEAKER_FACES,
    ESTIMATE_MARGIN,
    FACE_SECONDS_PER_FRAME,
    GPU_SECONDS_MAX,
    GPU_SECONDS_MIN,
    GPU_STARTUP_SECONDS,
    PARTIAL_STEP_COST,
    RESTORE_SECONDS_PER_FRAME,
    SYNC_SCORE_SECONDS_PER_FRAME,
    UNET_SECONDS_PER_FRAME_STEP,
    VAE_SECONDS_PER_FRAME,
    check_inputs,
    count_faces,
    gpu_seconds,
    JobOutcome,
    LipSyncJob,
    PipelineCache,
    stop_on_sigterm,
)
from latentsync.app_support.summary import (  # noqa: F401
    MARKER_COLOUR,
    MARKER_MIN_RADIUS,
    MARKER_RADIUS_FRACTION,
    decisions,
    describe_result,
    first_frame,
    mark_point,
    speaker_from_click,
    StageProgress,
)
from latentsync.app_support.speakers import (  # noqa: F401
    AUTOMATIC,
    ONE_FACE,
    PREVIEW_FRAMES,
    PREVIEW_SECONDS,
    SPEAKER_MODES,
    TIMELINE,
    FacesPreview,
    faces_preview,
    rows_from_timeline,
    speakers_value,
    timeline_from_rows,
)
from latentsync.app_support.server import (  # noqa: F401
    M_ARENA_MAX,
    MALLOC_ARENA_MAX_ENV,
    MALLOC_ARENAS,
    SERVED_PRUNE_AT,
    limit_malloc_arenas,
    logger,
    release_memory,
    ServedResults,
)
from latentsync.app_support.api_values import (  # noqa: F401
    api_rules,
    check_api_values,
    Choices,
    Flag,
    Range,
    Speakers,
    Text,
)
