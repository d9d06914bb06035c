"""The one exception type for problems with what a user gave us.

Everything a person can fix by changing their input (a file that is not a video, a video with no face,
audio with no samples, an argument out of range) raises :class:`InputError` with a sentence that says
what is wrong and, where useful, what to do. The CLI prints it without a traceback and exits with 2; the
app shows it with ``gr.Error``. Bugs and environment failures keep their ordinary exception types.
"""


class InputError(ValueError):
    """A user-facing problem with the input; ``str(err)`` is a message meant for a person."""


class CheckpointError(RuntimeError):
    """A model file is missing, unreachable (offline) or does not match the expected architecture."""
