"""Video and audio I/O at the model's rates: 25 fps RGB frames in chunks, 16 kHz mono float32 audio, H.264/AAC MP4 out.

Why the ffmpeg command-line tools rather than a Python binding such as PyAV (whose current wheels would do: they
bundle their own FFmpeg, configured with ``--enable-gpl --enable-libx264``): on Spaces the tools come from Debian's
``ffmpeg`` package (listed in ``packages.txt``), so there is no compiled extension to keep in step with the Python
version and no second copy of FFmpeg beside the system's, and the binaries we call are the ones a person can run to
reproduce a problem. The CLI also does by default what we need: it decodes every container and codec users
upload, applies rotation metadata, resamples the frame rate with the ``fps`` filter (drop/duplicate by timestamp,
the reference behaviour) and encodes with libx264 + the native AAC encoder. Its stderr, at ``-v error``, tells
what went wrong (a corrupt stream shows up there even when ffmpeg exits 0): it goes to the ``latentsync.media`` log,
while the :class:`InputError` a user sees says it in plain words, naming the file by its base name (no paths,
libav addresses or tool output). We stream raw frames through pipes, so memory stays bounded, and call the tools
with argument lists (never a shell). Probing (``probe``, ``MediaInfo``, ``check_video``) lives in
:mod:`latentsync.media.probe` and is re-exported here.
"""


from latentsync.media.probe import (  # noqa: F401 -- media is the one public module for file I/O
    IMAGE_CODECS,
    VIDEO_FPS,
    MediaInfo,
    _tail,
    _tool,
    check_audio,
    check_video,
    logger,
    native_fps,
    probe,
)
from latentsync.media.audio import (  # noqa: F401
    INT16_SCALE,
    MAX_AUDIO_CHANNELS,
    SAMPLE_RATE,
    SILENCE_DBFS,
    SILENCE_PEAK,
    _audio_samples,
    is_silent,
    load_audio,
    write_wav,
)
from latentsync.media.decode import (  # noqa: F401
    DEFAULT_CHUNK_FRAMES,
    SEEK_MARGIN_SECONDS,
    SEEKABLE_FORMATS,
    TRUNCATION_TOLERANCE_FRACTION,
    TRUNCATION_TOLERANCE_SECONDS,
    _first_error_line,
    _require_video,
    _video_command,
    frames_for_duration,
    iter_video_frames,
    read_image,
    read_video_frames,
)
from latentsync.media.encode import (  # noqa: F401
    AAC_BITRATE,
    H264_CRF,
    MAX_CRF,
    OUTPUT_PROBE_PREFIX,
    check_output_path,
    VideoWriter,
    write_video,
)
