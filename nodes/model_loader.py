"""AuthFaceModelLoader: an AuthFace release folder -> native MODEL, CLIP, VAE and CONTROL_NET."""

from __future__ import annotations

import os

import comfy.controlnet
import comfy.sd
import folder_paths
import torch
from comfy_api.v0_0_2 import io

from authface_core.errors import ModelFileError
from authface_core.release import ReleaseLayout, check_release, clip_text_keys, load_checked_state_dict
from authface_core.release.host import load_part, load_streamed

from .model_paths import AUTHFACE, register_model_folders

WEIGHT_DTYPES = {"default": None, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


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


def load_release(layout: ReleaseLayout, dtype: torch.dtype | None) -> tuple:
    """MODEL, CLIP, VAE and CONTROL_NET of a checked release, through ComfyUI's own loaders, one part
    at a time (each part's state dict is released before the next is read; the UNet and ControlNet,
    nearly all the bytes, are filled tensor by tensor). ``dtype`` None lets ComfyUI choose for the
    device. Raises ModelFileError when ComfyUI does not recognise a part or
    leaves some of its weights out."""
    options = {} if dtype is None else {"dtype": dtype}
    folders = {part: str(weights.folder) for part, weights in layout.components.items()}
    model = load_streamed(
        "SDXL-family UNet", layout.components["unet"],
        lambda sd: comfy.sd.load_diffusion_model_state_dict(sd, model_options=dict(options)),
        lambda patcher: patcher.model.diffusion_model)
    control_net = load_streamed(
        "SDXL ControlNet", layout.components["controlnet"],
        lambda sd: comfy.controlnet.load_controlnet_state_dict(sd, model_options=dict(options)),
        lambda control: control.control_model)
    vae = load_part("SDXL VAE", folders["vae"], [load_checked_state_dict(layout, "vae")],
                    lambda sd: comfy.sd.VAE(sd=sd), lambda vae: vae.first_stage_model, takes_keys=False)
    clip = load_part(
        "SDXL text encoders (CLIP-L + OpenCLIP bigG)", folders["text_encoder"],
        [_with_identity_projection(clip_text_keys(load_checked_state_dict(layout, "text_encoder"))),
         clip_text_keys(load_checked_state_dict(layout, "text_encoder_2"))],
        lambda clip_l, clip_g: comfy.sd.load_text_encoder_state_dicts(
            [clip_l, clip_g], embedding_directory=folder_paths.get_folder_paths("embeddings"),
            clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION, model_options=dict(options)),
        lambda clip: clip.cond_stage_model, takes_keys=False)
    return model, clip, vae, control_net


class AuthFaceModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceModelLoader",
            display_name="AuthFace Model Loader",
            category="AuthFace/restore",
            description="Loads an AuthFace release folder from models/authface/ (diffusers layout; "
            "*.safetensors, *.fp16.safetensors or sharded) through ComfyUI's own loaders, so the "
            "results are ordinary MODEL, CLIP, VAE and CONTROL_NET objects. The UNet and ControlNet are read "
            "straight into the models ComfyUI builds (no second copy in memory); a release whose "
            "weights ComfyUI would leave out is refused, naming them.",
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
        layout = check_release(release_path(release), prefer_fp16=prefer_fp16_files)
        return io.NodeOutput(*load_release(layout, WEIGHT_DTYPES[weight_dtype]))


