"""AuthFaceModelLoader: an AuthFace release folder -> native MODEL, CLIP, VAE and CONTROL_NET."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import comfy.controlnet
import comfy.sd
import folder_paths
import torch
from comfy_api.v0_0_2 import io

from authface_core.errors import ModelFileError
from authface_core.release import check_release, clip_text_keys, load_checked_state_dict

from .model_paths import AUTHFACE, register_model_folders

log = logging.getLogger("authface")

WEIGHT_DTYPES = {"default": None, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
# Phrases ComfyUI logs when a preset matched but some weights were left out.
DROPPED_WEIGHT_PHRASES = ("missing", "unexpected", "leftover keys")


def release_folders() -> list[str]:
    """Names of the release folders (holding unet/ and controlnet/) in every registered root."""
    register_model_folders()
    names = set()
    for root in folder_paths.get_folder_paths(AUTHFACE):
        if os.path.isdir(root):
            for name in os.listdir(root):
                if os.path.isdir(os.path.join(root, name, "unet")) and os.path.isdir(os.path.join(root, name, "controlnet")):
                    names.add(name)
    return sorted(names)


def release_path(name: str) -> str:
    for root in folder_paths.get_folder_paths(AUTHFACE):
        candidate = os.path.join(root, name)
        if os.path.isdir(candidate):
            return candidate
    roots = ", ".join(folder_paths.get_folder_paths(AUTHFACE))
    raise ModelFileError(f"no AuthFace release folder named {name!r} in {roots}: put the release "
                         "(unet/, controlnet/, vae/, text_encoder/, text_encoder_2/, tokenizer/, "
                         "tokenizer_2/, scheduler/) in a folder there")


class _DroppedWeights(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(phrase in message.lower() for phrase in DROPPED_WEIGHT_PHRASES):
            self.lines.append(message[:300])


@contextlib.contextmanager
def _watch_dropped(part: str, folder: str) -> Iterator[None]:
    handler = _DroppedWeights()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
    for line in handler.lines:
        log.warning("AuthFace: ComfyUI left out weights of %s (%s): %s", part, folder, line)


def _with_identity_projection(clip_l: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP-L state dict with an identity ``text_projection`` when it has none.

    SDXL's CLIP-L ships without a projection (only bigG's pooled output is used), while ComfyUI's
    CLIP-L module has one and would report it missing (its checkpoint loader hides that report);
    an identity fills the unused layer so a real omission still shows."""
    key = "text_projection.weight"
    if key not in clip_l:
        width = clip_l["text_model.final_layer_norm.weight"].shape[0]
        clip_l = {**clip_l, key: torch.eye(width, dtype=clip_l["text_model.final_layer_norm.weight"].dtype)}
    return clip_l


def _recognised(result, part: str, folder: str, expected: str):
    if result is None:
        raise ModelFileError(f"ComfyUI did not recognise {folder} as {expected}; check that the "
                             f"{part} is the AuthFace release's")
    return result


class AuthFaceModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceModelLoader",
            display_name="AuthFace Model Loader",
            category="AuthFace/restore",
            description="Loads an AuthFace release folder from models/authface/ (diffusers layout; "
            "*.safetensors, *.fp16.safetensors or sharded) through ComfyUI's own loaders, so the "
            "results are ordinary MODEL, CLIP, VAE and CONTROL_NET objects.",
            inputs=[
                io.Combo.Input("release", options=release_folders(),
                               tooltip="a folder in models/authface/ holding unet/, controlnet/, vae/, "
                               "text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/"),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                               tooltip="UNet, ControlNet and text encoder weights; default lets ComfyUI choose for "
                               "the device (on CPU it runs the text encoders in fp16)"),
                io.Boolean.Input("prefer_fp16_files", default=False,
                                 tooltip="read *.fp16.safetensors when a part has both variants"),
            ],
            outputs=[io.Model.Output("model"), io.Clip.Output("clip"), io.Vae.Output("vae"),
                     io.ControlNet.Output("control_net")],
        )

    @classmethod
    def execute(cls, release: str, weight_dtype: str, prefer_fp16_files: bool) -> io.NodeOutput:
        root = release_path(release)
        layout = check_release(root, prefer_fp16=prefer_fp16_files)
        options = {} if WEIGHT_DTYPES[weight_dtype] is None else {"dtype": WEIGHT_DTYPES[weight_dtype]}
        folders = {part: str(weights.folder) for part, weights in layout.components.items()}

        with _watch_dropped("the UNet", folders["unet"]):
            model = _recognised(comfy.sd.load_diffusion_model_state_dict(
                load_checked_state_dict(layout, "unet"), model_options=dict(options)),
                "UNet", folders["unet"], "an SDXL-family UNet")
        with _watch_dropped("the text encoders", folders["text_encoder"]):
            clip = _recognised(comfy.sd.load_text_encoder_state_dicts(
                [_with_identity_projection(clip_text_keys(load_checked_state_dict(layout, "text_encoder"))),
                 clip_text_keys(load_checked_state_dict(layout, "text_encoder_2"))],
                embedding_directory=folder_paths.get_folder_paths("embeddings"),
                clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION, model_options=dict(options)),
                "text encoders", folders["text_encoder"], "SDXL's CLIP-L + OpenCLIP bigG text encoders")
        with _watch_dropped("the VAE", folders["vae"]):
            vae = comfy.sd.VAE(sd=load_checked_state_dict(layout, "vae"))
        with _watch_dropped("the ControlNet", folders["controlnet"]):
            control_net = _recognised(comfy.controlnet.load_controlnet_state_dict(
                load_checked_state_dict(layout, "controlnet"), model_options=dict(options)),
                "ControlNet", folders["controlnet"], "an SDXL ControlNet")
        return io.NodeOutput(model, clip, vae, control_net)
