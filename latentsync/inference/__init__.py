"""The lip-sync pipeline and its stages: what turns one face video (or photo) and one speech clip into the
lip-synced MP4.

Read in this order: :mod:`~latentsync.inference.loading` (``load_pipeline``: checkpoints to a ready pipeline, once per
process), :mod:`~latentsync.inference.pipeline` (``LipSyncPipeline.__call__`` as numbered steps, and the user's
``LipSyncOptions``), then its stages: :mod:`~latentsync.inference.input_checks` (the request checked before any model
runs), :mod:`~latentsync.inference.output_plan` and :mod:`~latentsync.inference.timeline` (how many frames, which source
frame each shows), :mod:`~latentsync.inference.face_pass` with :mod:`~latentsync.inference.track_cache` (the face track,
cached on disk), :mod:`~latentsync.inference.audio_features` (Whisper features per video frame),
:mod:`~latentsync.inference.frame_sources`, :mod:`~latentsync.inference.generation_windows` and
:mod:`~latentsync.inference.native_fps` (the generation pass, 16 frames at a time), and
:mod:`~latentsync.inference.overlap` (CPU stages on worker threads around the denoiser).
:mod:`~latentsync.inference.compile` is the optional ``torch.compile``; :mod:`~latentsync.inference.cli` is
``python -m latentsync``.

The stage rooms it stands on are beside it: :mod:`latentsync.media` (file I/O), :mod:`latentsync.faces`,
:mod:`latentsync.models`, :mod:`latentsync.sync` and :mod:`latentsync.checkpoints`. Nothing here imports
:mod:`latentsync.data`, :mod:`latentsync.training` or :mod:`latentsync.batch`.
"""
