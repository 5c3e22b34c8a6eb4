"""AuthFaceConditioning: the released prompts encoded like the release, with SDXL size conditioning."""

from __future__ import annotations

from comfy_api.v0_0_2 import io

from authface_core.prompts import NEGATIVE_PROMPT, POSITIVE_PROMPT
from authface_core.token_window import single_window

ENCODINGS = ["release_77_tokens", "comfyui_long_prompt"]


def encode_prompt(clip, text: str, width: int, height: int, encoding: str) -> list:
    """CONDITIONING for ``text`` with SDXL size conditioning at ``width`` x ``height``.

    Encoded by ComfyUI's scheduled encoding (what CLIPTextEncode uses), so CLIP hooks and
    scheduled LoRA set on ``clip`` apply; without hooks it is one plain encode. Raises ValueError
    for a CLIP that is not SDXL's pair in 'release_77_tokens' mode."""
    if encoding == "release_77_tokens":
        tokens = clip.tokenize(text, return_word_ids=True, disable_weights=True)
        for key, chunks in tokens.items():
            tokenizer = getattr(clip.tokenizer, f"clip_{key}", None)
            if tokenizer is None:
                raise ValueError(f"this CLIP has no clip_{key} tokenizer: AuthFace needs an SDXL CLIP "
                                 "(CLIP-L + OpenCLIP bigG), e.g. from AuthFace Model Loader")
            tokens[key] = [single_window(chunks, tokenizer.start_token, tokenizer.end_token,
                                         tokenizer.pad_token, tokenizer.max_length)]
    else:
        tokens = clip.tokenize(text)
    sizes = {"width": width, "height": height, "crop_w": 0, "crop_h": 0, "target_width": width,
             "target_height": height}
    return clip.encode_from_tokens_scheduled(tokens, add_dict=sizes)


class AuthFaceConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceConditioning",
            display_name="AuthFace Conditioning",
            category="AuthFace/restore",
            description="Encodes the positive and negative prompts (the release's by default) with SDXL "
            "size conditioning at the working size. 'release_77_tokens' encodes like the authors' "
            "pipeline (one 77-token window per prompt, text beyond 75 tokens is cut); "
            "'comfyui_long_prompt' keeps every token in 77-token chunks.",
            inputs=[
                io.Clip.Input("clip"),
                io.Int.Input("width", default=512, min=64, max=4096, step=8),
                io.Int.Input("height", default=512, min=64, max=4096, step=8),
                io.String.Input("positive_prompt", default=POSITIVE_PROMPT, multiline=True),
                io.String.Input("negative_prompt", default=NEGATIVE_PROMPT, multiline=True),
                io.Combo.Input("encoding", options=ENCODINGS, default=ENCODINGS[0]),
            ],
            outputs=[io.Conditioning.Output("positive"), io.Conditioning.Output("negative")],
        )

    @classmethod
    def execute(cls, clip, width: int, height: int, positive_prompt: str, negative_prompt: str,
                encoding: str) -> io.NodeOutput:
        return io.NodeOutput(encode_prompt(clip, positive_prompt, width, height, encoding),
                             encode_prompt(clip, negative_prompt, width, height, encoding))
