"""AuthFaceApply: the AuthFace ControlNet on both guidance branches, hinted by the low-quality faces."""

from __future__ import annotations

import torch
from comfy_api.v0_0_2 import io

import nodes as comfy_nodes

SDXL_ADM_CHANNELS = 2816


def controlnet_problem(control_net) -> str | None:
    """Why ``control_net`` cannot be AuthFace's (an SDXL ControlNet with a 3-channel image hint), or None."""
    model = getattr(control_net, "control_model", None)
    if model is None:
        return f"it is a {type(control_net).__name__}, not a ControlNet model"
    label_emb = getattr(model, "label_emb", None)
    adm = None
    if label_emb is not None:
        first = label_emb[0][0] if isinstance(label_emb, torch.nn.Sequential) else None
        adm = getattr(first, "in_features", None)
    if adm != SDXL_ADM_CHANNELS:
        return ("it is not an SDXL ControlNet (no SDXL size/pooled-text embedding; an SD1.5 ControlNet "
                "perhaps)")
    return None


class AuthFaceApply(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceApply",
            display_name="AuthFace Apply",
            category="AuthFace/restore",
            description="Attaches the AuthFace ControlNet, hinted by the low-quality aligned faces (RGB in "
            "[0, 1] at the working size), to both the positive and the negative conditioning, and gives "
            "the empty latent batch to sample: one latent per face.",
            inputs=[
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.ControlNet.Input("control_net"),
                io.Image.Input("faces", tooltip="aligned low-quality face crops (AuthFace Align Faces)"),
                io.Float.Input("strength", default=1.0, min=0.0, max=10.0, step=0.01),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001),
            ],
            outputs=[io.Conditioning.Output("positive_controlled", display_name="positive"),
                     io.Conditioning.Output("negative_controlled", display_name="negative"),
                     io.Latent.Output("latent")],
        )

    @classmethod
    def execute(cls, positive, negative, control_net, faces: torch.Tensor, strength: float,
                start_percent: float, end_percent: float) -> io.NodeOutput:
        problem = controlnet_problem(control_net)
        if problem is not None:
            raise ValueError(f"AuthFace Apply needs the AuthFace (SDXL) ControlNet, but {problem}. "
                             "Load the release's controlnet/ with AuthFace Model Loader.")
        batch, height, width = faces.shape[0], faces.shape[1], faces.shape[2]
        if height % 8 or width % 8:
            raise ValueError(f"face crops of {width}x{height} are not multiples of 8: align at a size "
                             "such as 512 or 1024")
        for cond in positive + negative:
            size = (cond[1].get("width"), cond[1].get("height"))
            if None not in size and size != (width, height):
                raise ValueError(f"the face crops are {width}x{height} but the conditioning was made for "
                                 f"{size[0]}x{size[1]}: set AuthFace Conditioning's width/height to the crop size")
        positive, negative = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(
            positive, negative, control_net, faces[..., :3], strength, start_percent, end_percent)
        latent = torch.zeros((batch, 4, height // 8, width // 8), dtype=torch.float32)
        return io.NodeOutput(positive, negative, {"samples": latent})
