"""AuthFaceRegionMasks: eye, mouth and face masks of aligned crops, in pixels or latent pixels."""

from __future__ import annotations

import numpy as np
import torch
from comfy_api.v0_0_2 import io

from authface_core.faces.masks import region_mask
from authface_core.faces.types import FaceSet

from .sockets import Faces

LATENT_FACTOR = 8


def _require_aligned(faces: FaceSet) -> None:
    if not faces.crop_size:
        raise ValueError("these faces are not aligned yet: take 'faces' from AuthFace Align Faces")


class AuthFaceRegionMasks(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceRegionMasks",
            display_name="AuthFace Region Masks",
            category="AuthFace/faces",
            description="One MASK per aligned face covering the chosen regions, at the crop's pixel "
            "resolution or at latent resolution (crop size / 8, the fraction of each latent pixel covered).",
            inputs=[
                Faces.Input("faces"),
                io.Boolean.Input("eyes", default=True),
                io.Boolean.Input("mouth", default=True),
                io.Boolean.Input("face", default=False, tooltip="the whole face (landmark hull with forehead)"),
                io.Combo.Input("resolution", options=["pixel", "latent"], default="pixel"),
                io.Float.Input("feather", default=0.0, min=0.0, max=64.0, step=0.5,
                               tooltip="Gaussian softening of the edges, in crop pixels"),
            ],
            outputs=[io.Mask.Output("mask")],
        )

    @classmethod
    def execute(cls, faces: FaceSet, eyes: bool, mouth: bool, face: bool, resolution: str,
                feather: float) -> io.NodeOutput:
        _require_aligned(faces)
        regions = [name for name, on in (("eyes", eyes), ("mouth", mouth), ("face", face)) if on]
        if not regions:
            raise ValueError("choose at least one region (eyes, mouth or face)")
        masks = [region_mask(info, info.size, regions, resolution=resolution,
                             latent_factor=LATENT_FACTOR, feather=feather) for info in faces.aligned]
        if not masks:
            # Matches Align Faces' placeholder crop of a face-less batch: nothing is masked.
            side = faces.crop_size if resolution == "pixel" else faces.crop_size // LATENT_FACTOR
            return io.NodeOutput(torch.zeros((1, side, side), dtype=torch.float32))
        return io.NodeOutput(torch.from_numpy(np.stack(masks).astype(np.float32)))
