"""AuthFaceAlignFaces: cut aligned square crops of the detected faces."""

from __future__ import annotations

import logging

import torch
from comfy_api.v0_0_2 import io

from authface_core.faces.align import align_face
from authface_core.faces.types import FaceSet
from authface_core.images import to_rgb_float

from .runtime import images_to_numpy, numpy_to_images, placeholder_images, with_progress
from .sockets import Faces

log = logging.getLogger("authface")


class AuthFaceAlignFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceAlignFaces",
            display_name="AuthFace Align Faces",
            category="AuthFace/faces",
            description="Warps every detected face to a square crop (one batch for all faces of all "
            "images) and records the warp so AuthFace Paste Faces can put the crops back.",
            inputs=[
                io.Image.Input("image"),
                Faces.Input("faces"),
                io.Int.Input("size", default=512, min=64, max=4096, step=8),
                io.Combo.Input("method", options=["ffhq", "five_point"], default="ffhq",
                               tooltip="ffhq: NVlabs FFHQ recipe from 68 landmarks (the paper's data); "
                               "five_point: similarity to the 512 five-point template (GFPGAN/CodeFormer)"),
                io.Combo.Input("border", options=["reflect", "replicate", "constant"], default="reflect",
                               tooltip="how to fill crop areas outside the photo"),
            ],
            outputs=[
                io.Image.Output("crops"),
                Faces.Output("aligned_faces", display_name="faces"),
            ],
        )

    @classmethod
    def execute(cls, image: torch.Tensor, faces: FaceSet, size: int, method: str, border: str) -> io.NodeOutput:
        if len(faces.image_sizes) != image.shape[0]:
            raise ValueError(
                f"the faces were detected in a batch of {len(faces.image_sizes)} images but this image "
                f"batch has {image.shape[0]}: connect the same IMAGE to Detect Faces and Align Faces")
        arrays = images_to_numpy(image)
        crops, aligned = [], []
        for face in with_progress(faces.faces):
            crop, info = align_face(to_rgb_float(arrays[face.image_index]), face, size=size,
                                    method=method, border=border)
            crops.append(crop)
            aligned.append(info)
        result = FaceSet(image_sizes=list(faces.image_sizes), faces=list(faces.faces), aligned=aligned,
                         crop_size=size)
        if not crops:
            log.warning("AuthFace: no face in this batch; Align Faces gives one grey placeholder crop so "
                        "previews and samplers downstream still run, and Paste Faces passes the photos through")
            return io.NodeOutput(placeholder_images(size), result)
        return io.NodeOutput(numpy_to_images(crops), result)
