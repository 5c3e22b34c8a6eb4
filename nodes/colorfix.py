"""AuthFaceColorFix: colour correction of restored faces against the low-quality faces."""

from __future__ import annotations

import torch
from comfy_api.v0_0_2 import io

from authface_core.colorfix import COLOR_FIX_METHODS, color_fix


class AuthFaceColorFix(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceColorFix",
            display_name="AuthFace Color Fix",
            category="AuthFace/restore",
            description="Brings the restored faces' colours back to the low-quality input's. wavelet "
            "(the release's default) keeps the restored high frequencies and takes the input's low "
            "frequencies; adain matches per-channel mean and std; gray_world balances channel means "
            "(no reference needed); strength blends the fix with the restored faces.",
            inputs=[
                io.Image.Input("restored"),
                io.Image.Input("reference", tooltip="the low-quality aligned faces the restoration started from"),
                io.Combo.Input("method", options=list(COLOR_FIX_METHODS), default="wavelet"),
                io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.01),
            ],
            outputs=[io.Image.Output("image")],
        )

    @classmethod
    def execute(cls, restored: torch.Tensor, reference: torch.Tensor, method: str,
                strength: float) -> io.NodeOutput:
        if restored.shape[0] != reference.shape[0] and reference.shape[0] != 1:
            raise ValueError(f"got {restored.shape[0]} restored faces but {reference.shape[0]} references: "
                             "connect the same aligned faces that were restored")
        if restored.shape[0] == 0:
            return io.NodeOutput(restored)
        fixed = color_fix(restored[..., :3], reference[..., :3], method, strength, channels_last=True)
        return io.NodeOutput(fixed)
