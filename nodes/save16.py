"""AuthFaceSaveImage16: save images as 16-bit PNG (no 8-bit rounding of restored detail)."""

from __future__ import annotations

import os

import folder_paths
import torch
from comfy_api.v0_0_2 import io

from authface_core.images import write_png


class AuthFaceSaveImage16(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceSaveImage16",
            display_name="AuthFace Save Image (16-bit PNG)",
            category="AuthFace/io",
            description="Saves images to the output folder as 16-bit PNG (SaveImage writes 8 bits, "
            "truncating). Values are clipped to [0, 1]; RGBA images keep their alpha.",
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
            write_png(os.path.join(folder, filename), image, bits=16)
            saved.append({"filename": filename, "subfolder": subfolder, "type": "output"})
            counter += 1
        return io.NodeOutput(ui={"images": saved})
