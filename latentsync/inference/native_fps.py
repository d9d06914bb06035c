"""Output at the video's own frame rate (``LipSyncOptions.native_fps``): the frame generator of the generation pass.

The model runs on the 25 fps timeline (model frame k: the output frame nearest k / 25 s, audio window k); each
output frame takes the generated mouth of the model frame nearest its own time and keeps everything else of its own
face: ``generated · (1 − mask) + own · mask`` in the aligned space of its own landmarks, then pasted back with its
own alignment. Model frames are generated a window at a time, as the output frames come to need them, and dropped
once no later output frame can use them. The timeline maps are :mod:`latentsync.inference.timeline`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from latentsync.faces import paste_back, warp_faces
from latentsync.inference.frame_sources import batched
from latentsync.inference.output_plan import OutputPlan

# lipsync(first model frame, its frames, their alignments, which have a face) -> the generated aligned faces of the
# frames with one, (k, 3, res, res) float in [-1, 1]: the pipeline's denoiser with its noise and audio bound.
LipSyncWindow = Callable[[int, np.ndarray, np.ndarray, np.ndarray], torch.Tensor]


def native_rate_frames(source, plan: OutputPlan, valid: np.ndarray, matrices: np.ndarray, lipsync: LipSyncWindow,
                       pixel_mask: torch.Tensor, resolution: int, frames_per_call: int,
                       progress: Callable[[str, int, int], None]) -> Iterator[np.ndarray]:  # fmt: skip
    """Output frames at ``plan.fps``, ``frames_per_call`` at a time, ready to encode.

    ``source`` gives the video's frames by index (:class:`~latentsync.inference.frame_sources.VideoFrames`); ``valid`` and
    ``matrices`` are the face track's per source frame; ``pixel_mask`` (res, res) is 1 where a face keeps its own
    pixels. ``lipsync`` is called once per model window, in order.
    """
    model_batches = batched(source.frames(plan.model_sources), frames_per_call)
    total = math.ceil(len(plan.model_sources) / frames_per_call)
    faces: dict[int, torch.Tensor] = {}  # model frame -> (3, res, res) float, for the model frames still needed
    generated_until = 0  # model frames [0, generated_until) are done
    keep_mask = pixel_mask.float().cpu()  # (res, res), 1 = the frame's own pixels
    start = 0
    for frames in batched(source.frames(plan.schedule), frames_per_call):
        wanted = plan.model_for_output[start : start + len(frames)]  # (n,) model frame of each output frame
        while generated_until <= wanted.max():
            progress("lip sync", generated_until // frames_per_call, total)
            inputs = next(model_batches)
            sources = plan.model_sources[generated_until : generated_until + len(inputs)]
            ok = valid[sources]
            if ok.any():
                made = lipsync(generated_until, inputs[ok], matrices[sources[ok]], ok)
                for k, face in zip(np.flatnonzero(ok) + generated_until, made.cpu()):
                    faces[int(k)] = face
            generated_until += len(inputs)
        for k in [k for k in faces if k < wanted.min()]:
            del faces[k]
        sources = plan.schedule[start : start + len(frames)]
        keep = valid[sources] & np.array([int(k) in faces for k in wanted])
        out = frames.copy()
        if keep.any():
            own = torch.from_numpy(warp_faces(frames[keep], matrices[sources[keep]], resolution))
            own = own.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (n, 3, res, res) in [-1, 1]
            mouths = torch.stack([faces[int(k)] for k in wanted[keep]])
            mixed = mouths * (1 - keep_mask) + own * keep_mask
            out[keep] = paste_back(frames[keep], mixed, matrices[sources[keep]])
        start += len(frames)
        yield out
    progress("lip sync", total, total)
