"""AuthFaceCandidates: N restoration candidates per face in one latent batch, each with its own noise."""

from __future__ import annotations

import comfy.model_management
import torch
from comfy_api.v0_0_2 import io

from authface_core.candidates import MemoryEstimate, candidate_keys, check_candidates_fit
from authface_core.noise_keys import NOISE_KEYS


def memory_estimate(model, latent: torch.Tensor, items: int) -> MemoryEstimate:
    """What sampling ``items`` latents shaped like ``latent``'s items with ``model`` needs, from the
    host's own figures: ``memory_required`` (the activation estimate ComfyUI's sampler reserves,
    here for one latent's guidance pair), the weights the model must still move to its device
    (none when it runs where it is stored, as on CPU) and the device's free memory."""
    pair_shape = [2, *latent.shape[1:]]
    activations = int(model.model.memory_required(pair_shape))
    weights = 0
    if model.load_device != model.offload_device:
        weights = max(0, int(model.model_size()) - int(model.loaded_size()))
    free = int(comfy.model_management.get_free_memory(model.load_device))
    return MemoryEstimate(items=items, weight_bytes=weights, activation_bytes_per_item=activations,
                          available_bytes=free)


class AuthFaceCandidates(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceCandidates",
            display_name="AuthFace Candidates",
            category="AuthFace/restore",
            description="Restores every face N times in one sampling run, each candidate from its own "
            "seeded noise (candidate k of face i gets the same noise for the same seed, whatever N is; "
            "candidate 0 is exactly the single run). Put it between AuthFace Apply's latent and the "
            "sampler, use AuthFace Release Noise, and keep the best with AuthFace Pick Best. N = 1 "
            "passes the latent through unchanged. Refuses an N whose estimated memory exceeds what is "
            "free, before sampling starts.",
            inputs=[
                io.Model.Input("model", tooltip="the model that will sample (its size and memory estimate)"),
                io.Latent.Input("latent", tooltip="AuthFace Apply's latent: one per face"),
                io.Int.Input("candidates", default=4, min=1, max=4096,
                             tooltip="candidates per face (N)"),
            ],
            outputs=[io.Latent.Output("candidate_latent", display_name="latent",
                                      tooltip="faces x N latents: all faces' candidate 0, then all "
                                      "candidate 1, ...")],
        )

    @classmethod
    def execute(cls, model, latent: dict, candidates: int) -> io.NodeOutput:
        if candidates == 1:
            return io.NodeOutput(latent)
        if "batch_index" in latent or "noise_mask" in latent:
            raise ValueError("AuthFace Candidates takes AuthFace Apply's latent directly (this one carries a "
                             "batch index or noise mask from other latent nodes)")
        samples = latent["samples"]
        faces = samples.shape[0]
        estimate = memory_estimate(model, samples, faces * candidates)
        check_candidates_fit(faces, candidates, estimate)
        expanded = dict(latent)
        expanded["samples"] = samples.repeat(candidates, *([1] * (samples.ndim - 1)))
        expanded[NOISE_KEYS] = candidate_keys(faces, candidates)
        return io.NodeOutput(expanded)
