"""The face-track cache on the production face backend: a track found with some face-alignment weights is
never reused with others (random test weights, then the real ones, on the same video), and a copied folder
still hits."""

from __future__ import annotations

import os
from fractions import Fraction

import pytest
import torch

from latentsync.inference.face_pass import face_tracker, track_settings
from latentsync.faces import load_landmark_backend
from latentsync.faces.backend_face_alignment import DETECTOR_FILE, FAN_TORCHSCRIPT_FILE


@pytest.mark.slow
def test_tracks_are_keyed_by_the_face_alignment_weights(tiny_checkpoints_face_alignment, tmp_path):
    source = tiny_checkpoints_face_alignment / "auxiliary"
    same, other = tmp_path / "same", tmp_path / "other"
    for folder in (same, other):
        folder.mkdir()
        os.link(source / FAN_TORCHSCRIPT_FILE, folder / FAN_TORCHSCRIPT_FILE)
    os.link(source / DETECTOR_FILE, same / DETECTOR_FILE)  # the same bytes elsewhere
    detector = torch.load(source / DETECTOR_FILE, weights_only=True)
    detector["conv1_1.bias"][0] += 1.0  # other weights of the same architecture
    torch.save(detector, other / DETECTOR_FILE)

    def settings(folder):
        backend = load_landmark_backend("face_alignment", device="cpu", weights_dir=folder)
        return track_settings(backend, Fraction(25), None, face_tracker(backend, Fraction(25), None))

    original = settings(source)
    assert settings(same) == original
    changed = settings(other)
    assert changed != original and {k for k in original if original[k] != changed[k]} == {"backend_weights"}
