"""LatentSync: audio-conditioned latent-diffusion lip sync (an independent implementation).

Importing the package is cheap: it loads no weights, touches no GPU, reads no files and never imports
gradio. Heavy modules are imported where they are used.
"""

from latentsync.errors import CheckpointError, InputError

__version__ = "0.1.0"

__all__ = ["CheckpointError", "InputError", "__version__"]
