"""AuthFaceIdentityGuidance: a MODEL patch that nudges each face toward its reference identity."""

from __future__ import annotations

import copy

import torch
from comfy_api.v0_0_2 import io

from authface_core.faces.types import FaceSet
from authface_core.identity.guidance import IdentityGuidance, arcface_thetas, embed, load_torch_arcface
from authface_core.identity.landmarks import crop_landmarks as find_crop_landmarks

from .identity_inputs import crop_landmarks, reference_inputs, references
from .model_paths import insightface_root
from .sockets import Faces

PACKS = ["buffalo_l", "antelopev2"]


class _Decoder:
    """The VAE's decoder as a differentiable map from the sampler's latents to images in [0, 1].

    ComfyUI runs prompts under torch.inference_mode, which makes the loaded VAE's weights
    inference tensors that autograd cannot save; the decoder is copied once, on first use, outside
    inference mode (one extra copy: ~0.3 GB for the SDXL VAE in fp32, 10 MB for TAESD XL)."""

    def __init__(self, vae, latent_format) -> None:
        self.vae = vae
        self.latent_format = latent_format
        self.model: torch.nn.Module | None = None

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            with torch.inference_mode(False):
                self.model = copy.deepcopy(self.vae.first_stage_model).requires_grad_(False)
        self.model.to(latent.device)
        dtype = next(self.model.parameters()).dtype
        decoded = self.model.decode(self.latent_format.process_out(latent).to(dtype))
        return self.vae.process_output(decoded.float())


class AuthFaceIdentityGuidance(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceIdentityGuidance",
            display_name="AuthFace Identity Guidance",
            category="AuthFace/identity",
            description="Training-free identity guidance (off at scale 0): at each sampling step in the "
            "start/end range, moves each face's predicted clean image toward its reference's ArcFace "
            "identity by one normalised gradient step (through the VAE decoder and ArcFace from an "
            "insightface pack). Works with any sampler. Cost per step and face: one decode and one "
            "ArcFace pass, forward and backward (see the README); a TAESD XL vae makes the decode cheap.",
            inputs=[
                io.Model.Input("model"),
                io.Vae.Input("vae", tooltip="decodes the predicted faces for the identity loss: the release's VAE, "
                             "or TAESD XL (Load VAE: taesdxl) for a much cheaper guided step"),
                Faces.Input("faces", tooltip="the aligned faces being restored (AuthFace Align Faces)"),
                *reference_inputs(),
                io.Combo.Input("arcface_pack", options=PACKS, default=PACKS[0],
                               tooltip="insightface pack in models/insightface/models/<pack>/"),
                io.Float.Input("scale", default=0.0, min=0.0, max=10.0, step=0.01,
                               tooltip="step length per sampling step in latent standard deviations; 0 = off"),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, vae, faces: FaceSet, reference: torch.Tensor, reference_kind: str, arcface_pack: str,
                scale: float, start_percent: float, end_percent: float) -> io.NodeOutput:
        if scale == 0.0 or not faces.aligned:
            return io.NodeOutput(model)
        size = faces.crop_size
        own = crop_landmarks(faces, size)
        refs = references(reference, reference_kind, len(faces.aligned), size, own)
        ref_landmarks = refs.landmarks or [find_crop_landmarks(crop) for crop in refs.crops]
        embedder = load_torch_arcface(insightface_root(arcface_pack), arcface_pack)
        with torch.inference_mode(False), torch.no_grad():
            ref_images = torch.stack([torch.from_numpy(c).permute(2, 0, 1).float() for c in refs.crops])
            ref_embeddings = embed(embedder, ref_images, arcface_thetas(ref_landmarks, ref_images.shape[-1]))
        sampling = model.get_model_object("model_sampling")
        guidance = IdentityGuidance(embedder, _Decoder(vae, model.get_model_object("latent_format")),
                                    ref_embeddings, arcface_thetas(own, size), scale,
                                    sigma_min=float(sampling.percent_to_sigma(end_percent)),
                                    sigma_max=float(sampling.percent_to_sigma(start_percent)))

        def post_cfg(args: dict) -> torch.Tensor:
            return guidance(args["denoised"], float(args["sigma"].max()))

        patched = model.clone()
        patched.set_model_sampler_post_cfg_function(post_cfg)
        return io.NodeOutput(patched)
