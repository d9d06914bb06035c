"""The data toolchain: a folder of raw talking-head videos in, LatentSync's filtered, aligned training set out.

Stages (README §6, each a function of one clip; :mod:`latentsync.data.engine` lists them): check, resample
(25 fps, 16 kHz mono), shots (PySceneDetect), segment (5 s), faces (one face, affine-aligned at 256/512 px), sync
(SyncNet v2 offset and confidence, audio shifted), quality (hyperIQA), then the file list training reads
(:mod:`latentsync.data.fileslist`). Runs on a local process pool or as a Ray Data pipeline; resumable.

``python -m latentsync.data RAW_DIR OUT_DIR``, or :func:`process_dataset`. Importing this package is cheap.
"""

from latentsync.data.fileslist import read_fileslist, write_fileslist
from latentsync.data.options import DataOptions

__all__ = ["DataOptions", "process_dataset", "read_fileslist", "write_fileslist"]


def process_dataset(raw_dir, out_dir, options: DataOptions = DataOptions(), **kwargs):
    """See :func:`latentsync.data.run.process_dataset` (imported on call, so the package import stays light)."""
    from latentsync.data.run import process_dataset as _process_dataset

    return _process_dataset(raw_dir, out_dir, options, **kwargs)
