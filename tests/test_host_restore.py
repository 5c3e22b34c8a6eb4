"""AuthFace restoration inside real ComfyUI hosts, with random-weight releases of real SDXL-family
shapes: both API workflows, faithfulness to the standalone pipeline, interrupt and progress,
bad models and inputs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from comfy_host import REPO, ComfyHost, HostError
from host_outputs import read_png, saved_by
from release_fixture import cached_release

pytestmark = pytest.mark.host

PHOTO_WORKFLOW = REPO / "workflows" / "api" / "authface_restore_photo.json"
ALIGNED_WORKFLOW = REPO / "workflows" / "api" / "authface_restore_aligned.json"
RELEASE = "AuthFace"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.fixture(scope="module")
def release(comfy_host: ComfyHost) -> Path:
    path = cached_release("plain")
    comfy_host.add_model("authface", RELEASE, path)
    return path


@pytest.fixture(scope="module")
def aligned_face(hanks_photo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real face aligned by the faces core at 256 px (small for CPU sampling)."""
    from authface_core.faces.align import align_faces
    from authface_core.faces.detect import detect_faces
    from authface_core.images import to_rgb_float

    photo = to_rgb_float(cv2.cvtColor(cv2.imread(str(hanks_photo)), cv2.COLOR_BGR2RGB))
    faces = detect_faces([photo])
    crops, _ = align_faces([photo], faces, size=256)
    path = tmp_path_factory.mktemp("aligned") / "hanks_aligned_256.png"
    cv2.imwrite(str(path), np.round(crops[0][..., ::-1] * 255).astype(np.uint8))
    return path


def aligned_prompt(host: ComfyHost, face: Path, size: int, steps: int, sampler: str = "ddim",
                   color_fix: str = "none", seed: int = 0) -> dict:
    prompt = json.loads(ALIGNED_WORKFLOW.read_text())
    prompt["1"]["inputs"]["image"] = host.add_input(face)
    # fp32 everywhere, like the reference pipeline below (ComfyUI's CPU default puts CLIP in fp16).
    prompt["2"]["inputs"]["weight_dtype"] = "fp32"
    prompt["3"]["inputs"].update(width=size, height=size)
    prompt["5"]["inputs"]["steps"] = steps
    prompt["6"]["inputs"]["sampler_name"] = sampler
    prompt["8"]["inputs"]["noise_seed"] = seed
    prompt["11"]["inputs"]["method"] = color_fix
    prompt["12"]["inputs"]["filename_prefix"] = f"test/{uuid.uuid4().hex[:8]}"
    return prompt


def reference_restore(release: Path, face: Path, steps: int, sampler: str) -> np.ndarray:
    """The standalone diffusers pipeline on the same face, seed and sampler, fp32 throughout."""
    from authface_core.pipeline import AuthFacePipeline

    pipeline = AuthFacePipeline.from_release(release, device="cpu", dtype=torch.float32)
    lq = torch.from_numpy(read_png(face).astype(np.float32)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        out = pipeline.restore(lq, steps=steps, cfg=8.0, seed=0, sampler=sampler, color_fix="none",
                               residuals_in_fp16=False)
    del pipeline
    return out[0].permute(1, 2, 0).double().numpy()


def test_aligned_workflow_matches_the_standalone_pipeline(comfy_host: ComfyHost, release: Path,
                                                          aligned_face: Path) -> None:
    """Faithful route (release noise + SamplerCustomAdvanced, DDIM eta 0) vs our diffusers pipeline."""
    entry = comfy_host.run(aligned_prompt(comfy_host, aligned_face, 256, steps=4), timeout=1200)
    [saved] = saved_by(comfy_host, entry, "12")
    comfy = read_png(saved)
    reference = reference_restore(release, aligned_face, steps=4, sampler="ddim")
    value = psnr(comfy, reference)
    print(f"ComfyUI {comfy_host.version} faithful route vs standalone pipeline, DDIM 4 steps: {value:.1f} dB")
    assert comfy.shape == (256, 256, 3)
    assert np.abs(comfy - read_png(aligned_face)).mean() > 0.02, "the restoration left the face unchanged"
    assert value >= 90.0


def test_default_ksampler_route_is_close_at_50_steps(comfy_host: ComfyHost, release: Path,
                                                     aligned_face: Path, tmp_path: Path) -> None:
    """Stock KSampler (noise * sigma0 start) stays within 60 dB of the release at 50 steps."""
    small = tmp_path / "face_128.png"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(aligned_face)), (128, 128), interpolation=cv2.INTER_AREA))
    prompt = aligned_prompt(comfy_host, small, 128, steps=50)
    for node in ("5", "6", "7", "8", "9"):
        del prompt[node]
    prompt["9"] = {"class_type": "KSampler", "inputs": {
        "model": ["2", 0], "seed": 0, "steps": 50, "cfg": 8.0, "sampler_name": "ddim",
        "scheduler": "ddim_uniform", "positive": ["4", 0], "negative": ["4", 1],
        "latent_image": ["4", 2], "denoise": 1.0}}
    entry = comfy_host.run(prompt, timeout=1800)
    [saved] = saved_by(comfy_host, entry, "12")
    value = psnr(read_png(saved), reference_restore(release, small, steps=50, sampler="ddim"))
    print(f"ComfyUI {comfy_host.version} stock KSampler vs standalone pipeline, DDIM 50 steps: {value:.1f} dB")
    assert value >= 60.0


def test_photo_workflow_restores_faces_and_keeps_the_rest(comfy_host: ComfyHost, release: Path,
                                                          t1_png: Path) -> None:
    from authface_core.faces.align import align_faces
    from authface_core.faces.detect import detect_faces
    from authface_core.faces.select import select_faces
    from authface_core.images import to_rgb_float

    prompt = json.loads(PHOTO_WORKFLOW.read_text())
    prompt["1"]["inputs"]["image"] = comfy_host.add_input(t1_png)
    prompt["2"]["inputs"].update(select="largest", max_faces=2)
    prompt["4"]["inputs"]["size"] = 256
    prompt["6"]["inputs"].update(width=256, height=256)
    prompt["8"]["inputs"]["steps"] = 2
    entry = comfy_host.run(prompt, timeout=1800)

    [saved] = saved_by(comfy_host, entry, "17")
    result = read_png(saved)
    original = read_png(t1_png)
    assert result.shape == original.shape
    restored_previews = saved_by(comfy_host, entry, "16")
    assert len(restored_previews) == 2

    photo = to_rgb_float(original.astype(np.float32))
    faces = select_faces(detect_faces([photo]), mode="largest", count=2)
    _, faces = align_faces([photo], faces, size=256)
    footprint = np.zeros(original.shape[:2], np.uint8)
    for info in faces.aligned:
        corners = np.array([[0, 0], [256, 0], [256, 256], [0, 256]], np.float64) - 0.5
        source = corners @ info.inverse_matrix[:, :2].T + info.inverse_matrix[:, 2]
        cv2.fillConvexPoly(footprint, np.round(source).astype(np.int32), 1)
    footprint = cv2.dilate(footprint, np.ones((5, 5), np.uint8))
    outside = footprint == 0
    # SaveImage truncates to 8 bits, so an untouched pixel may come back one level lower.
    untouched = np.round((original[outside] - result[outside]) * 255)
    assert untouched.min() >= 0 and untouched.max() <= 1
    inside_change = np.abs(result - original)[footprint == 1].mean()
    print(f"mean change inside the 2 face footprints: {inside_change:.3f}")
    assert inside_change > 0.01


def test_photo_without_faces_skips_sampling(comfy_host: ComfyHost, release: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    noise = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "noface.png"), noise)
    prompt = json.loads(PHOTO_WORKFLOW.read_text())
    prompt["1"]["inputs"]["image"] = comfy_host.add_input(tmp_path / "noface.png")
    prompt["17"]["inputs"]["filename_prefix"] = "test/noface"
    entry, executed = comfy_host.run_watching(prompt, timeout=600)
    [saved] = saved_by(comfy_host, entry, "17")
    np.testing.assert_array_equal(cv2.imread(str(saved)), noise)
    assert {"2", "4", "15"} <= executed
    assert "12" not in executed, "the sampler ran although the photo has no face"


def test_progress_and_interrupt(comfy_host: ComfyHost, release: Path, aligned_face: Path) -> None:
    long_run = aligned_prompt(comfy_host, aligned_face, 256, steps=40, seed=7)
    watcher = comfy_host.watch()
    prompt_id = comfy_host.queue(long_run, client_id=watcher.client_id)
    progress = watcher.wait_for(lambda m: m["type"] == "progress" and m["data"].get("value", 0) >= 2
                                and m["data"].get("prompt_id", prompt_id) == prompt_id, timeout=900)
    assert progress["data"]["max"] == 40
    comfy_host.post("/interrupt", {})
    watcher.wait_for(lambda m: m["type"] == "execution_interrupted", timeout=300)
    watcher.close()
    with pytest.raises(HostError):
        comfy_host.wait(prompt_id, timeout=60)
    entry = comfy_host.run(aligned_prompt(comfy_host, aligned_face, 256, steps=2, seed=8), timeout=900)
    assert len(saved_by(comfy_host, entry, "12")) == 1


def test_sd15_controlnet_is_refused(comfy_host: ComfyHost, release: Path, aligned_face: Path,
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    from diffusers import ControlNetModel

    path = tmp_path_factory.mktemp("sd15") / "sd15_controlnet.safetensors"
    torch.manual_seed(0)
    model = ControlNetModel(cross_attention_dim=768, attention_head_dim=8).half()
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    del model
    prompt = aligned_prompt(comfy_host, aligned_face, 256, steps=2)
    prompt["20"] = {"class_type": "ControlNetLoader",
                    "inputs": {"control_net_name": comfy_host.add_model("controlnet", path.name, path)}}
    prompt["4"]["inputs"]["control_net"] = ["20", 0]
    with pytest.raises(HostError, match="not an SDXL ControlNet"):
        comfy_host.run(prompt, timeout=600)


def test_incomplete_release_names_the_missing_part(comfy_host: ComfyHost, release: Path, aligned_face: Path,
                                                   tmp_path: Path) -> None:
    broken = tmp_path / "broken_release"
    broken.mkdir()
    for part in release.iterdir():
        if part.name != "vae":
            (broken / part.name).symlink_to(part)
    prompt = aligned_prompt(comfy_host, aligned_face, 256, steps=2)
    prompt["2"]["inputs"]["release"] = comfy_host.add_model("authface", "broken", broken)
    with pytest.raises(HostError, match="vae"):
        comfy_host.run(prompt, timeout=600)


def test_crops_not_matching_the_conditioning_size_are_refused(comfy_host: ComfyHost, release: Path,
                                                              aligned_face: Path) -> None:
    prompt = aligned_prompt(comfy_host, aligned_face, 256, steps=2)
    prompt["3"]["inputs"].update(width=512, height=512)
    with pytest.raises(HostError, match="set AuthFace Conditioning's width/height"):
        comfy_host.run(prompt, timeout=600)


def test_single_file_route_with_builtin_loaders(comfy_host: ComfyHost, release: Path, aligned_face: Path) -> None:
    """An SDXL single-file checkpoint (written by ComfyUI's CheckpointSave from the release) and the
    ControlNet file, loaded by ComfyUI's built-in loaders, drive our Conditioning/Apply nodes."""
    prefix = f"checkpoints/authface_{comfy_host.version.replace('.', '_')}"
    comfy_host.run({
        "1": {"class_type": "AuthFaceModelLoader", "inputs": {"release": RELEASE, "weight_dtype": "default",
                                                               "prefer_fp16_files": False}},
        "2": {"class_type": "CheckpointSave", "inputs": {"model": ["1", 0], "clip": ["1", 1], "vae": ["1", 2],
                                                          "filename_prefix": prefix}},
    }, timeout=1200)
    [checkpoint] = (comfy_host.base_dir / "output" / "checkpoints").glob(f"{Path(prefix).name}_*.safetensors")
    ckpt_name = comfy_host.add_model("checkpoints", checkpoint.name, checkpoint)
    cn_name = comfy_host.add_model("controlnet", "authface_controlnet.safetensors",
                                   release / "controlnet" / "diffusion_pytorch_model.safetensors")

    prompt = aligned_prompt(comfy_host, aligned_face, 256, steps=2)
    prompt["2"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}}
    prompt["20"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": cn_name}}
    prompt["4"]["inputs"]["control_net"] = ["20", 0]
    prompt["10"]["inputs"]["vae"] = ["2", 2]
    entry = comfy_host.run(prompt, timeout=1200)
    [saved] = saved_by(comfy_host, entry, "12")
    assert read_png(saved).shape == (256, 256, 3)
    assert np.abs(read_png(saved) - read_png(aligned_face)).mean() > 0.02
    assert "leftover keys" not in comfy_host.log_text()


def test_sharded_and_fp16_releases_load_and_agree(comfy_host: ComfyHost, release: Path, aligned_face: Path,
                                                  tmp_path: Path) -> None:
    """The loader reads sharded files with their index and *.fp16.safetensors; both hold the same model."""
    small = tmp_path / "face_128.png"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(aligned_face)), (128, 128), interpolation=cv2.INTER_AREA))
    images = {}
    for variant in ("sharded", "fp16"):
        prompt = aligned_prompt(comfy_host, small, 128, steps=2)
        prompt["2"]["inputs"]["release"] = comfy_host.add_model("authface", f"AuthFace_{variant}",
                                                                cached_release(variant))
        prompt["2"]["inputs"]["prefer_fp16_files"] = variant == "fp16"
        [saved] = saved_by(comfy_host, comfy_host.run(prompt, timeout=1200), "12")
        images[variant] = read_png(saved)
    value = psnr(images["sharded"], images["fp16"])
    print(f"ComfyUI {comfy_host.version}: sharded fp32 vs fp16 release, 2 DDIM steps: {value:.1f} dB")
    assert value > 30.0
    assert np.abs(images["sharded"] - read_png(small)).mean() > 0.02
