"""The diffusers restore pipeline and the CLI, on a tiny random-weight release saved in the real
formats (diffusers / transformers save_pretrained, a sharded UNet, SDXL's scheduler config, the
real CLIP tokenizer files from the ComfyUI host)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from authface_core.cli import main
from authface_core.errors import ModelFileError
from authface_core.faces.align import apply_affine
from authface_core.pipeline import AuthFacePipeline, RestoreInterrupted, restore_photo
from authface_core.prompts import NEGATIVE_PROMPT, POSITIVE_PROMPT

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / ".cache/hosts/comfyui-0.30.0/comfy/sd1_tokenizer"
SIZE = 64
# stabilityai/stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json (its "set_alpha_to_one":
# false is the DDIM trap of docs/faithfulness.md).
SDXL_SCHEDULER_CONFIG = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}
HIDDEN = (16, 32)  # CLIP-L and bigG stand-ins: context width 48
POOLED = 24
TIME_DIM = 8


def _text_config(hidden: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=POOLED,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )


def build_tiny_release(root: Path) -> Path:
    """A complete release of tiny models with scales that make prompts and hints matter: token
    embeddings of std 1, re-randomised ControlNet zero convs and hint encoder (docs/fixtures.md,
    section 3)."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(HIDDEN[0]))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(HIDDEN[1]))
    unet = UNet2DConditionModel(
        sample_size=SIZE // 8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=sum(HIDDEN), attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=8,
        addition_embed_type="text_time", addition_time_embed_dim=TIME_DIM,
        projection_class_embeddings_input_dim=6 * TIME_DIM + POOLED,
    )
    controlnet = ControlNetModel.from_unet(unet)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=SIZE,
    )
    with torch.no_grad():
        for encoder in (text_encoder, text_encoder_2):
            encoder.get_input_embeddings().weight.normal_(0.0, 1.0)
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.weight.normal_(0.0, 0.1)
        # With the default init the hint reaches the residuals scaled by ~1e-4: re-initialise the
        # hint encoder and scale its output to std 0.5, about that of the latent features it is
        # added to.
        hint_encoder = controlnet.controlnet_cond_embedding
        for module in hint_encoder.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
        hint_encoder.conv_out.weight *= 0.5 / float(hint_encoder(torch.rand(2, 3, SIZE, SIZE)).std())
    unet.save_pretrained(root / "unet", max_shard_size="300KB")
    controlnet.save_pretrained(root / "controlnet")
    vae.save_pretrained(root / "vae")
    text_encoder.save_pretrained(root / "text_encoder")
    text_encoder_2.save_pretrained(root / "text_encoder_2")
    for name in ("tokenizer", "tokenizer_2"):
        shutil.copytree(TOKENIZER_DIR, root / name)
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(SDXL_SCHEDULER_CONFIG))
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_release(tmp_path_factory.mktemp("tiny_release"))


@pytest.fixture(scope="module")
def pipeline(release: Path) -> AuthFacePipeline:
    return AuthFacePipeline.from_release(release)


def _lq(count: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


class _Calls(list):
    """Keyword arguments of every forward call of a spied module."""


def _spy(module: torch.nn.Module, calls: _Calls) -> type:
    """Record the inputs of ``module``'s forward by switching it to a test-local subclass;
    returns the original class to switch back to."""
    original = type(module)

    class Spy(original):  # type: ignore[misc, valid-type]
        def forward(self, sample, timestep, **kwargs):
            calls.append({"sample": sample, "timestep": int(timestep), **kwargs})
            return super().forward(sample, timestep, **kwargs)

    module.__class__ = Spy
    return original


@pytest.fixture
def spied(pipeline: AuthFacePipeline) -> Iterator[tuple[_Calls, _Calls]]:
    controlnet_calls, unet_calls = _Calls(), _Calls()
    originals = (_spy(pipeline.models.controlnet, controlnet_calls), _spy(pipeline.models.unet, unet_calls))
    try:
        yield controlnet_calls, unet_calls
    finally:
        pipeline.models.controlnet.__class__, pipeline.models.unet.__class__ = originals


def test_release_loads_with_sharded_unet(release: Path, pipeline: AuthFacePipeline) -> None:
    assert len(list((release / "unet").glob("*-of-*.safetensors"))) > 1
    from safetensors.torch import load_file

    saved = {}
    for shard in (release / "unet").glob("*.safetensors"):
        saved.update(load_file(shard))
    loaded = pipeline.models.unet.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert pipeline.models.vae.dtype == torch.float32


def test_weights_not_matching_their_config_are_refused(release: Path, tmp_path: Path) -> None:
    broken = tmp_path / "release"
    shutil.copytree(release, broken)
    config_path = broken / "vae" / "config.json"
    config = json.loads(config_path.read_text())
    config["block_out_channels"] = [8, 8, 8, 16]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="do not fit the model its config.json describes") as info:
        AuthFacePipeline.from_release(broken)
    assert str(broken / "vae") in str(info.value)


def test_restore_returns_images_in_range_reproducibly(pipeline: AuthFacePipeline) -> None:
    lq = _lq(2)
    first = pipeline.restore(lq, steps=3, seed=7)
    assert first.shape == lq.shape and first.dtype == torch.float32
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    assert torch.equal(first, pipeline.restore(lq, steps=3, seed=7))
    assert float((first - pipeline.restore(lq, steps=3, seed=8)).abs().max()) > 1e-2
    assert float((first - lq).abs().mean()) > 1e-3


def test_seed_generator_and_int_draw_the_same_noise(pipeline: AuthFacePipeline) -> None:
    lq = _lq(1)
    by_int = pipeline.restore(lq, steps=2, seed=11, sampler="ddim")
    by_generator = pipeline.restore(lq, steps=2, seed=torch.manual_seed(11), sampler="ddim")
    assert torch.equal(by_int, by_generator)


def test_result_does_not_depend_on_batch_size(pipeline: AuthFacePipeline) -> None:
    lq = _lq(3, seed=1)
    together = pipeline.restore(lq, steps=3, seed=2, batch_size=3)
    one_by_one = pipeline.restore(lq, steps=3, seed=2, batch_size=1)
    assert torch.allclose(together, one_by_one, atol=1e-4)


def test_hint_and_prompt_reach_the_output(pipeline: AuthFacePipeline) -> None:
    base = pipeline.restore(_lq(1, seed=0), steps=2, seed=0, color_fix="none")
    other_hint = pipeline.restore(_lq(1, seed=5), steps=2, seed=0, color_fix="none")
    other_prompt = pipeline.restore(_lq(1, seed=0), steps=2, seed=0, color_fix="none", prompt="a cartoon dog")
    assert float((base - other_hint).abs().mean()) > 1e-3
    assert float((base - other_prompt).abs().mean()) > 1e-3


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_fifty_steps_use_leading_timesteps(pipeline: AuthFacePipeline, sampler: str) -> None:
    scheduler = pipeline.make_scheduler(sampler, 50)
    assert [int(t) for t in scheduler.timesteps] == list(range(981, 0, -20))
    assert not scheduler.config.clip_sample


def test_controlnet_runs_on_both_branches_with_the_lq_hint(
    pipeline: AuthFacePipeline, spied: tuple[_Calls, _Calls]
) -> None:
    controlnet_calls, unet_calls = spied
    lq = _lq(2, seed=3)
    pipeline.restore(lq, steps=4, seed=0, cfg=8.0)
    assert [c["timestep"] for c in controlnet_calls] == [751, 501, 251, 1]
    assert [c["timestep"] for c in unet_calls] == [751, 501, 251, 1]
    negative, negative_pooled = pipeline.encode_prompt(NEGATIVE_PROMPT)
    positive, positive_pooled = pipeline.encode_prompt(POSITIVE_PROMPT)
    assert float(negative.abs().max()) > 0.1 and float(negative_pooled.abs().max()) > 0.1
    for call in controlnet_calls:
        assert call["sample"].shape[0] == 4
        assert torch.equal(call["sample"][:2], call["sample"][2:])
        hint = call["controlnet_cond"]
        assert torch.equal(hint, torch.cat([lq, lq]))
        assert float(hint.min()) >= 0.0 and float(hint.max()) <= 1.0
        context = call["encoder_hidden_states"]
        assert torch.equal(context[:2], negative.expand(2, -1, -1))
        assert torch.equal(context[2:], positive.expand(2, -1, -1))
        pooled = call["added_cond_kwargs"]["text_embeds"]
        assert torch.equal(pooled[:2], negative_pooled.expand(2, -1))
        assert torch.equal(pooled[2:], positive_pooled.expand(2, -1))
        assert call["added_cond_kwargs"]["time_ids"].tolist() == [[SIZE, SIZE, 0, 0, SIZE, SIZE]] * 4
        assert call["conditioning_scale"] == 1.0


@pytest.mark.parametrize("round_fp16", [True, False])
def test_controlnet_residuals_are_rounded_to_fp16(
    pipeline: AuthFacePipeline, spied: tuple[_Calls, _Calls], round_fp16: bool
) -> None:
    _, unet_calls = spied
    pipeline.restore(_lq(1), steps=1, seed=0, residuals_in_fp16=round_fp16)
    residuals = [*unet_calls[0]["down_block_additional_residuals"], unet_calls[0]["mid_block_additional_residual"]]
    representable = all(torch.equal(r, r.half().float()) for r in residuals)
    assert representable == round_fp16


def test_no_guidance_runs_the_positive_branch_only(
    pipeline: AuthFacePipeline, spied: tuple[_Calls, _Calls]
) -> None:
    controlnet_calls, _ = spied
    pipeline.restore(_lq(2), steps=1, seed=0, cfg=1.0)
    positive, _ = pipeline.encode_prompt(POSITIVE_PROMPT)
    assert controlnet_calls[0]["sample"].shape[0] == 2
    assert torch.equal(controlnet_calls[0]["encoder_hidden_states"], positive.expand(2, -1, -1))


# Words the CLIP tokenizer keeps as one token each.
WORDS = ["face", "photo", "red", "blue", "green", "skin", "light", "dark", "eye", "hair",
         "smile", "sharp", "soft", "warm", "cold", "old", "young", "man", "woman", "portrait"]


def test_prompt_uses_one_77_token_window(pipeline: AuthFacePipeline) -> None:
    tokenizer = pipeline.models.tokenizer
    assert all(len(tokenizer(w, add_special_tokens=False).input_ids) == 1 for w in WORDS)
    words = [WORDS[i % len(WORDS)] for i in range(100)]
    long_embeds, long_pooled = pipeline.encode_prompt(" ".join(words))
    cut_embeds, cut_pooled = pipeline.encode_prompt(" ".join(words[:75]))
    shorter_embeds, _ = pipeline.encode_prompt(" ".join(words[:74]))
    assert long_embeds.shape == (1, 77, sum(HIDDEN)) and long_pooled.shape == (1, POOLED)
    assert torch.equal(long_embeds, cut_embeds) and torch.equal(long_pooled, cut_pooled)
    assert not torch.allclose(long_embeds, shorter_embeds)


def test_prompt_embedding_is_penultimate_layers_concatenated(pipeline: AuthFacePipeline) -> None:
    m = pipeline.models
    embeds, pooled = pipeline.encode_prompt(["a portrait photo", "a red face"])
    assert embeds.shape == (2, 77, sum(HIDDEN))
    with torch.no_grad():
        for tokenizer, encoder, columns in (
            (m.tokenizer, m.text_encoder, slice(0, HIDDEN[0])),
            (m.tokenizer_2, m.text_encoder_2, slice(HIDDEN[0], None)),
        ):
            ids = tokenizer("a red face").input_ids
            window = torch.tensor([ids + [tokenizer.pad_token_id] * (77 - len(ids))])
            output = encoder(window, output_hidden_states=True)
            assert torch.allclose(embeds[1:, :, columns], output.hidden_states[-2], atol=1e-6)
            assert not torch.allclose(embeds[1:, :, columns], output.hidden_states[-1], atol=1e-3)
        assert torch.allclose(pooled[1:], output.text_embeds, atol=1e-6)


def test_ddim_and_ddpm_end_on_the_clean_sample(pipeline: AuthFacePipeline, release: Path) -> None:
    from diffusers import DDIMScheduler

    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    eps = torch.randn(1, 4, 8, 8, generator=generator)
    ddim = pipeline.make_scheduler("ddim", 50)
    alpha = ddim.alphas_cumprod[1]
    clean = (sample - (1 - alpha).sqrt() * eps) / alpha.sqrt()
    assert float(ddim.final_alpha_cumprod) == 1.0
    assert torch.allclose(ddim.step(eps, 1, sample).prev_sample, clean, atol=1e-5)
    ddpm = pipeline.make_scheduler("ddpm", 50)
    assert torch.allclose(ddpm.step(eps, 1, sample, generator=generator).prev_sample, clean, atol=1e-5)
    # What the release's own scheduler config gives in stock diffusers: one step short of clean.
    stock = DDIMScheduler.from_pretrained(release / "scheduler")
    stock.set_timesteps(50)
    assert not torch.allclose(stock.step(eps, 1, sample).prev_sample, clean, atol=1e-3)


def test_interrupt_and_progress(pipeline: AuthFacePipeline) -> None:
    seen: list[tuple[int, int]] = []
    pipeline.restore(_lq(1), steps=3, seed=0, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(RestoreInterrupted):
        pipeline.restore(_lq(1), steps=3, seed=0, interrupt=lambda: len(seen) > 3,
                         progress=lambda done, total: seen.append((done, total)))
    assert len(seen) == 4


def test_bad_lq_is_refused(pipeline: AuthFacePipeline) -> None:
    with pytest.raises(ValueError, match="divide 0-255"):
        pipeline.restore(_lq(1) * 255, steps=1)
    with pytest.raises(ValueError, match="multiples of 8"):
        pipeline.restore(torch.rand(1, 3, 60, 64), steps=1)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        pipeline.restore(torch.rand(3, 64, 64), steps=1)
    with pytest.raises(ValueError, match="unknown sampler"):
        pipeline.restore(_lq(1), steps=1, sampler="euler")


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def test_restore_photo_changes_only_pixels_near_faces(pipeline: AuthFacePipeline, t1_photo: Path) -> None:
    photo = _read_rgb(t1_photo)
    restored, faces = restore_photo(photo, pipeline, "dlib", size=SIZE, steps=2, seed=0)
    assert len(faces.faces) == 6 and len(faces.aligned) == 6
    assert restored.shape == photo.shape and restored.dtype == np.float32
    height, width = photo.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    near = np.zeros(height * width, dtype=bool)
    for info in faces.aligned:
        crop = apply_affine(info.matrix, pixels)
        near |= np.all((crop >= -1.0) & (crop <= SIZE), axis=1)
    near = near.reshape(height, width)
    assert np.array_equal(restored[~near], photo[~near])
    assert float(np.abs(restored[near] - photo[near]).mean()) > 0.01
    for info in faces.aligned:
        x0, y0, x1, y1 = (int(v) for v in info.face.box)
        assert float(np.abs(restored[y0:y1, x0:x1] - photo[y0:y1, x0:x1]).mean()) > 0.01


def test_photo_without_face_is_returned_unchanged(pipeline: AuthFacePipeline) -> None:
    flat = np.full((96, 128, 3), 0.5, dtype=np.float32)
    restored, faces = restore_photo(flat, pipeline, "dlib", size=SIZE, steps=1)
    assert faces.faces == [] and np.array_equal(restored, flat)


def test_cli_restores_a_real_photo(release: Path, t1_photo: Path, tmp_path: Path) -> None:
    before = t1_photo.read_bytes()
    out = tmp_path / "out ü"
    assert main(["restore", str(t1_photo), "--model", str(release), "--out", str(out), "--steps", "1", "--size", str(SIZE)]) == 0
    written = cv2.imdecode(np.fromfile(str(out / "t1.png"), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    original = cv2.imread(str(t1_photo))
    assert written.shape == original.shape and written.dtype == np.uint8
    assert np.abs(written.astype(int) - original.astype(int)).mean() > 0.5
    assert t1_photo.read_bytes() == before


def test_cli_copies_faceless_rgba16_through_and_restores_aligned_crops(release: Path, tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 48 * 80, dtype=np.float64).reshape(48, 80)
    faceless = np.stack([ramp, ramp[::-1], np.full_like(ramp, 30000), np.full_like(ramp, 40000)], axis=2).astype(np.uint16)
    cv2.imencode(".png", faceless)[1].tofile(str(tmp_path / "plain.png"))
    crop = (np.random.default_rng(0).random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    cv2.imencode(".png", crop)[1].tofile(str(tmp_path / "crop.png"))
    out = tmp_path / "out"
    common = ["--model", str(release), "--out", str(out), "--steps", "1", "--size", str(SIZE)]
    assert main(["restore", str(tmp_path / "plain.png"), *common]) == 0
    copied = cv2.imdecode(np.fromfile(str(out / "plain.png"), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    assert copied.dtype == np.uint16 and np.array_equal(copied, faceless)
    assert main(["restore", str(tmp_path / "crop.png"), "--aligned", *common]) == 0
    restored = cv2.imread(str(out / "crop.png"))
    assert restored.shape == crop.shape and np.abs(restored.astype(int) - crop.astype(int)).mean() > 1


def test_cli_fails_clearly_on_bad_input(
    release: Path, t1_photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    missing_model = tmp_path / "no_model"
    assert main(["restore", str(t1_photo), "--model", str(missing_model), "--out", str(tmp_path / "o")]) != 0
    assert str(missing_model) in capsys.readouterr().err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert main(["restore", str(broken), "--model", str(release), "--out", str(tmp_path / "o"), "--steps", "1"]) != 0
    assert "broken.jpg" in caplog.text and "decode" in caplog.text
    assert main(["restore", str(tmp_path / "absent.png"), "--model", str(release), "--out", str(tmp_path / "o")]) != 0
    assert "absent.png" in capsys.readouterr().err
    same_folder = ["restore", str(tmp_path / "crop.png"), "--model", str(release), "--out", str(tmp_path)]
    cv2.imencode(".png", np.zeros((SIZE, SIZE, 3), np.uint8))[1].tofile(str(tmp_path / "crop.png"))
    assert main(same_folder) != 0
    assert "overwrite an input" in capsys.readouterr().err
