"""AuthFaceFacePrompts: each face of the batch conditioned on its own attribute prompt."""

from __future__ import annotations

import torch
from comfy_api.v0_0_2 import io

from authface_core.face_prompts import batch_conditionings, face_prompt, parse_face_prompts

from .conditioning import ENCODINGS, encode_prompt


class AuthFaceFacePrompts(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceFacePrompts",
            display_name="AuthFace Face Prompts",
            category="AuthFace/restore",
            description="Gives faces of the batch their own prompt (MGFR-style attributes: 'a woman with "
            "blue eyes, freckles'), all restored in one sampling run. One line per face: 'INDEX: text', "
            "indices as in the detection preview / crop order from 0. Faces without a line keep the "
            "positive conditioning. Put this between AuthFace Conditioning and AuthFace Apply. Each face "
            "comes out as it would restored alone with its prompt (same seed, deterministic sampler).",
            inputs=[
                io.Clip.Input("clip"),
                io.Conditioning.Input("positive", tooltip="AuthFace Conditioning's positive: kept by faces "
                                      "without a line, and its size conditioning is used for every face"),
                io.Image.Input("faces", tooltip="the aligned faces to restore (their count is the batch)"),
                io.String.Input("face_prompts", default="", multiline=True,
                                tooltip="one line per face: '0: a woman with blue eyes'"),
                io.Boolean.Input("with_release_prompt", default=True,
                                 tooltip="write each face's text before the release's positive prompt; off: "
                                 "the line is the face's whole prompt"),
                io.Combo.Input("encoding", options=ENCODINGS, default=ENCODINGS[0],
                               tooltip="as in AuthFace Conditioning"),
            ],
            outputs=[io.Conditioning.Output("positive_per_face", display_name="positive")],
        )

    @classmethod
    def execute(cls, clip, positive: list, faces: torch.Tensor, face_prompts: str, with_release_prompt: bool,
                encoding: str) -> io.NodeOutput:
        prompts = parse_face_prompts(face_prompts, faces.shape[0])
        if not prompts:
            return io.NodeOutput(positive)
        height, width = faces.shape[1], faces.shape[2]
        per_face = [encode_prompt(clip, face_prompt(prompts[i], with_release_prompt), width, height, encoding)
                    if i in prompts else None for i in range(faces.shape[0])]
        return io.NodeOutput(batch_conditionings(positive, per_face))
