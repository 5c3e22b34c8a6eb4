"""AuthFaceSaveImage16: save images as 16-bit PNG (no 8-bit rounding of restored detail)."""

from __future__ import annotations

import os

import cv2
import folder_paths
import numpy as np
import torch
from comfy_api.v0_0_2 import io

from authface_core.images import split_alpha


def to_png16(image: np.ndarray) -> np.ndarray:
    """(H, W, 3 or 4) float RGB(A) in [0, 1] -> uint16 BGR(A) array for cv2.imwrite, rounded."""
    rgb, alpha = split_alpha(image)
    bgr = np.round(rgb[..., ::-1] * 65535.0).astype(np.uint16)
    if alpha is None:
        return bgr
    return np.dstack([bgr, np.round(alpha * 65535.0).astype(np.uint16)])


class AuthFaceSaveImage16(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceSaveImage16",
            display_name="AuthFace Save Image (16-bit PNG)",
            category="AuthFace/io",
            description="Saves images to the output folder as 16-bit PNG (SaveImage writes 8 bits, "
            "truncating). RGBA images keep their alpha.",
            inputs=[
                io.Image.Input("images"),
                io.String.Input("filename_prefix", default="AuthFace/restored"),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images: torch.Tensor, filename_prefix: str) -> io.NodeOutput:
        output_dir = folder_paths.get_output_directory()
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, output_dir, images.shape[2], images.shape[1])
        saved = []
        for image in images.detach().float().cpu().numpy():
            filename = f"{name}_{counter:05}_.png"
            if not cv2.imwrite(os.path.join(folder, filename), to_png16(image)):
                raise OSError(f"could not write {os.path.join(folder, filename)}: check the output folder")
            saved.append({"filename": filename, "subfolder": subfolder, "type": "output"})
            counter += 1
        return io.NodeOutput(ui={"images": saved})
