"""LatentSync: audio-conditioned latent-diffusion lip sync (an independent implementation).

Importing the package is cheap: it loads no weights, touches no GPU, reads no files and never imports
gradio. Heavy modules are imported where they are used.
"""

from latentsync.errors import CheckpointError, InputError

__version__ = "0.1.0"

__all__ = ["CheckpointError", "InputError", "__version__", "load_pipeline"]


def load_pipeline(version: str = "1.5", device=None, dtype=None, checkpoints_dir=None, sync_scores: bool = False,
                  *, revision: str | None = None, compile: bool = False):  # noqa: A002  # fmt: skip
    """Load LatentSync ``version`` ("1.5" or "1.6") and return a ready :class:`~latentsync.inference.pipeline.LipSyncPipeline`.

    ``pipeline(video, audio, output)`` then writes the lip-synced MP4. See :func:`latentsync.inference.loading.load_pipeline`
    for the arguments; this wrapper only keeps ``import latentsync`` free of torch.
    """
    from latentsync.inference.loading import load_pipeline as _load_pipeline

    return _load_pipeline(version, device=device, dtype=dtype, checkpoints_dir=checkpoints_dir, sync_scores=sync_scores,
                          revision=revision, compile=compile)  # fmt: skip
