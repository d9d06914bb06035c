"""Lip-sync scoring with the original SyncNet (Sync-C / Sync-D), as the field and LatentSync report it.

Modules, leaves first: ``syncnet`` (the network and its strict loader), ``mfcc`` (audio features and
windows), ``crop`` (face-track smoothing and 224x224 crops), ``scoring`` (offset search on embeddings),
``scorer`` (the streaming ``SyncScorer`` that ties them together). Importing this package loads no
weights and reads no files.
"""

from latentsync.sync.scorer import SyncScorer
from latentsync.sync.scoring import SyncScore, offset_distances, score_embeddings
from latentsync.sync.syncnet import SyncNetV2, SyncNetV2Config, load_syncnet_v2

__all__ = [
    "SyncNetV2",
    "SyncNetV2Config",
    "SyncScore",
    "SyncScorer",
    "load_syncnet_v2",
    "offset_distances",
    "score_embeddings",
]
