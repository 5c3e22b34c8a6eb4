"""Identity guidance inside real ComfyUI hosts, on the random-weight release and the random-weight
ArcFace pack (real IResNet-50 architecture, insightface file layout).

One API prompt restores Tom Hanks' face (aligned at 64 px, 2 DDIM steps, CFG 8, ControlNet on both
branches) five times from the same seed: without guidance; through AuthFace Identity Guidance at
scale 0; patched at scale 1 but with a step range that no step falls in; guided at scale 1 toward
the low-quality face itself; and guided the same way through TAESD XL (VAE Loader ``taesdxl``,
random weights of ComfyUI's own architecture, tests/taesd_fixture.py) instead of the release's VAE.
The first three must be bit-identical; each guided face must be closer to the reference, by the
same embedder, when decoded by the decoder its guidance went through (cosine similarity of ArcFace
embeddings, computed here with the torch IResNet on the host's 16-bit output).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from arcface_fixture import cached_arcface_root
from comfy_host import ComfyHost
from release_fixture import cached_release
from taesd_fixture import build_taesdxl

pytestmark = pytest.mark.host

RELEASE = "AuthFace"
SIZE = 64
STEPS = 2
SEED = 5
SCALE = 1.0
# No schedule sigma of 2 ddim_uniform steps lies exactly at 99.9% of the schedule.
NO_STEP = 0.999


@pytest.fixture(scope="module")
def release(comfy_host: ComfyHost, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = cached_release("plain")
    comfy_host.add_model("authface", RELEASE, path)
    comfy_host.add_model("insightface", "models", cached_arcface_root() / "models")
    for taesd in build_taesdxl(comfy_host.version, tmp_path_factory.mktemp("taesdxl")):
        comfy_host.add_model("vae_approx", taesd.name, taesd)
    return path


def _graph(host: ComfyHost, photo: Path) -> tuple[dict, str]:
    tag = uuid.uuid4().hex[:8]
    prompt = {
        "photo": {"class_type": "LoadImage", "inputs": {"image": host.add_input(photo)}},
        "detect": {"class_type": "AuthFaceDetectFaces", "inputs": {
            "image": ["photo", 0], "detector": "dlib", "select": "all", "max_faces": 0, "face_indices": "0",
            "min_face_size": 32, "order": "left_to_right"}},
        "align": {"class_type": "AuthFaceAlignFaces", "inputs": {
            "image": ["photo", 0], "faces": ["detect", 0], "size": SIZE, "method": "ffhq", "border": "reflect"}},
        "loader": {"class_type": "AuthFaceModelLoader", "inputs": {"release": RELEASE, "weight_dtype": "fp32",
                                                                   "prefer_fp16_files": False}},
        "text": {"class_type": "AuthFaceConditioning", "inputs": {
            "clip": ["loader", 1], "width": SIZE, "height": SIZE, "encoding": "release_77_tokens",
            "positive_prompt": "hyper-realistic portrait, face close-up, super detailed",
            "negative_prompt": "oil painting, cartoon, blurring, worst quality"}},
        "apply": {"class_type": "AuthFaceApply", "inputs": {
            "positive": ["text", 0], "negative": ["text", 1], "control_net": ["loader", 3], "faces": ["align", 0],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        "sigmas": {"class_type": "BasicScheduler", "inputs": {"model": ["loader", 0], "scheduler": "ddim_uniform",
                                                              "steps": STEPS, "denoise": 1.0}},
        "sampler": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "ddim"}},
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": SEED}},
        "taesd": {"class_type": "VAELoader", "inputs": {"vae_name": "taesdxl"}},
    }
    release_vae, taesd = ["loader", 2], ["taesd", 0]
    runs = {"plain": None, "zero": (0.0, 0.0, 1.0, release_vae), "window": (SCALE, NO_STEP, NO_STEP, release_vae),
            "guided": (SCALE, 0.0, 1.0, release_vae), "tiny": (SCALE, 0.0, 1.0, taesd)}
    # (run, decoder) pairs whose images the test measures.
    decoded = {("plain", "release"): release_vae, ("guided", "release"): release_vae,
               ("plain", "taesd"): taesd, ("tiny", "taesd"): taesd}
    for name, settings in runs.items():
        model = ["loader", 0]
        if settings is not None:
            scale, start, end, vae = settings
            prompt[f"{name}_guidance"] = {"class_type": "AuthFaceIdentityGuidance", "inputs": {
                "model": ["loader", 0], "vae": vae, "faces": ["align", 1], "reference": ["align", 0],
                "reference_kind": "aligned_crops", "arcface_pack": "buffalo_l", "scale": scale,
                "start_percent": start, "end_percent": end}}
            model = [f"{name}_guidance", 0]
        prompt[f"{name}_guider"] = {"class_type": "CFGGuider", "inputs": {
            "model": model, "positive": ["apply", 0], "negative": ["apply", 1], "cfg": 8.0}}
        prompt[f"{name}_sample"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["noise", 0], "guider": [f"{name}_guider", 0], "sampler": ["sampler", 0],
            "sigmas": ["sigmas", 0], "latent_image": ["apply", 2]}}
        prompt[f"{name}_save"] = {"class_type": "SaveLatent", "inputs": {
            "samples": [f"{name}_sample", 0], "filename_prefix": f"test/guidance_{tag}_{name}"}}
    for (name, decoder), vae in decoded.items():
        prompt[f"{name}_{decoder}_decode"] = {"class_type": "VAEDecode", "inputs": {
            "samples": [f"{name}_sample", 0], "vae": vae}}
        prompt[f"{name}_{decoder}_image"] = {"class_type": "AuthFaceSaveImage16", "inputs": {
            "images": [f"{name}_{decoder}_decode", 0], "filename_prefix": f"test/guidance_{tag}_{name}_{decoder}"}}
    return prompt, tag


def _saved(host: ComfyHost, entry: dict, node: str, kind: str) -> Path:
    [record] = entry["outputs"][node][kind]
    return host.base_dir / record["type"] / record.get("subfolder", "") / record["filename"]


def test_guidance_raises_identity_and_is_off_at_scale_zero(comfy_host: ComfyHost, release: Path,
                                                           hanks_photo: Path) -> None:
    from authface_core.faces.align import align_faces
    from authface_core.faces.detect import detect_faces
    from authface_core.identity.guidance import arcface_thetas, embed, load_torch_arcface
    from authface_core.images import to_rgb_float

    prompt, _ = _graph(comfy_host, hanks_photo)
    entry = comfy_host.run(prompt, timeout=1800)
    latents = {name: load_file(str(_saved(comfy_host, entry, f"{name}_save", "latents")))["latent_tensor"]
               for name in ("plain", "zero", "window", "guided")}
    assert torch.equal(latents["zero"], latents["plain"]), "scale 0 changed the result"
    assert torch.equal(latents["window"], latents["plain"]), "guidance outside its step range changed the result"

    # The reference as the node saw it: the same photo, detected and aligned by the same core.
    photo = to_rgb_float(cv2.cvtColor(cv2.imread(str(hanks_photo)), cv2.COLOR_BGR2RGB))
    crops, faces = align_faces([photo], detect_faces([photo]), size=SIZE)
    thetas = arcface_thetas([faces.aligned[0].landmarks], SIZE)
    arcface = load_torch_arcface(cached_arcface_root(), "buffalo_l")

    def image(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].float()

    def read16(path: Path) -> np.ndarray:
        return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., 2::-1].astype(np.float32) / 65535.0

    with torch.no_grad():
        reference = embed(arcface, image(crops[0]), thetas)
        similarity = {key: float(embed(arcface, image(read16(_saved(comfy_host, entry, f"{key}_image", "images"))),
                                       thetas) @ reference.T)
                      for key in ("plain_release", "guided_release", "plain_taesd", "tiny_taesd")}
    print(f"ComfyUI {comfy_host.version}: ArcFace similarity to the reference; release VAE: unguided "
          f"{similarity['plain_release']:.3f}, guided at scale {SCALE} {similarity['guided_release']:.3f}; "
          f"TAESD XL: unguided {similarity['plain_taesd']:.3f}, guided through it {similarity['tiny_taesd']:.3f}")
    assert similarity["guided_release"] > similarity["plain_release"] + 0.05
    assert similarity["tiny_taesd"] > similarity["plain_taesd"] + 0.05
