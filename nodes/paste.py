"""AuthFacePasteFaces: put processed crops back into the original photos."""

from __future__ import annotations

import logging

import numpy as np
import torch
from comfy_api.v0_0_2 import io

from authface_core.faces.paste import paste_faces
from authface_core.faces.types import FaceSet
from authface_core.images import split_alpha

from .runtime import images_to_numpy, numpy_to_images, placeholder_images, with_progress
from .sockets import Faces

log = logging.getLogger("authface")


class AuthFacePasteFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFacePasteFaces",
            display_name="AuthFace Paste Faces",
            category="AuthFace/faces",
            description="Inverse-warps each processed crop (any square size) into its original photo "
            "with a feathered mask scaled to the face; photos without faces pass through unchanged.",
            inputs=[
                io.Image.Input("image", tooltip="the original photos given to Detect/Align"),
                io.Image.Input("crops", lazy=True,
                               tooltip="one processed crop per aligned face, in the same order; not "
                               "evaluated when the batch has no face"),
                Faces.Input("faces", tooltip="from AuthFace Align Faces"),
                io.Combo.Input("mask", options=["square", "face"], default="square",
                               tooltip="blend the whole crop square, or only the face hull"),
                io.Float.Input("feather", default=1.0, min=0.0, max=4.0, step=0.05,
                               tooltip="edge softness relative to the default (scaled to each face's size)"),
            ],
            outputs=[io.Image.Output("pasted", display_name="image"),
                     io.Image.Output("pasted_crops", display_name="crops", tooltip="the crops that were pasted (a grey placeholder "
                                     "when there was no face), for previews that must not pull the "
                                     "restoration when there is nothing to restore")],
        )

    @classmethod
    def check_lazy_status(cls, image, crops, faces: FaceSet, mask, feather) -> list[str]:
        return ["crops"] if faces.aligned and crops is None else []

    @classmethod
    def execute(cls, image: torch.Tensor, crops: torch.Tensor | None, faces: FaceSet, mask: str,
                feather: float) -> io.NodeOutput:
        if not faces.crop_size:
            raise ValueError("these faces are not aligned: take 'faces' from AuthFace Align Faces")
        if not faces.aligned:
            log.info("AuthFace: no face in this batch; the photos pass through unchanged")
            return io.NodeOutput(image, placeholder_images(faces.crop_size))
        if len(faces.image_sizes) != image.shape[0]:
            raise ValueError(
                f"the faces belong to a batch of {len(faces.image_sizes)} images but this image batch has "
                f"{image.shape[0]}: connect the photos that went into Detect Faces")
        if crops.shape[0] != len(faces.aligned):
            raise ValueError(
                f"got {crops.shape[0]} crops for {len(faces.aligned)} aligned faces: the crops must be the "
                "Align Faces output (after processing) in the same order")
        if crops.shape[1] != crops.shape[2]:
            raise ValueError(f"crops must be square, got {crops.shape[2]}x{crops.shape[1]}")
        photos = images_to_numpy(image)
        crop_arrays = images_to_numpy(crops)
        results = []
        for index, photo in enumerate(with_progress(photos)):
            rgb, alpha = split_alpha(photo)
            members = faces.faces_of_image(index)
            if members:
                rgb = paste_faces(rgb, [crop_arrays[i][..., :3] for i in members],
                                  [faces.aligned[i] for i in members], feather=feather, mask=mask)
            else:
                log.info("AuthFace: image %d has no face; passed through unchanged", index)
            results.append(rgb if alpha is None else np.dstack([rgb, alpha]))
        return io.NodeOutput(numpy_to_images(results).to(image.dtype), crops)
