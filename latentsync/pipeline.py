"""Moved to :mod:`latentsync.inference.pipeline`; this name keeps ``from latentsync.pipeline import LipSyncOptions``
(the public API before the move) working."""

from latentsync.inference.pipeline import *  # noqa: F401,F403
from latentsync.inference.pipeline import LipSyncOptions, LipSyncPipeline, LipSyncResult  # noqa: F401
