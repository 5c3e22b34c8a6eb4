"""Stage I pieces in-process: long-caption text conditioning (against ComfyUI's own tokenizer),
padding masks, the resumable data order and the run configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from comfy_host import HOST_VERSIONS, host_dir
from release_fixture import cached_release
from test_pipeline import build_tiny_release
from training.stage1.config import Stage1Config, parse_config
from training.stage1.data import StreamPosition, StreamSampler
from training.stage1.text import TextEncoder, collate_text, token_windows
from training.stage1.validation import unet_eps

# 40 comma-separated tags: well over one 75-token window, no ComfyUI weight syntax.
LONG_CAPTION = ", ".join(
    f"{word} detail" for word in (
        "sharp", "soft", "warm", "cool", "natural", "studio", "rim", "back", "side", "top",
        "skin", "pore", "eye", "lash", "brow", "lip", "hair", "beard", "freckle", "wrinkle",
        "cheek", "chin", "jaw", "nose", "ear", "neck", "collar", "fabric", "lens", "bokeh",
        "grain", "contrast", "shadow", "highlight", "tone", "colour", "focus", "depth", "frame", "light",
    )
)
SHORT_CAPTION = "a woman, smiling, soft lighting"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """(TextEncoder, UNet) of a tiny release saved in the real formats."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    root = build_tiny_release(tmp_path_factory.mktemp("tiny_release"))
    encoder = TextEncoder(
        (CLIPTokenizer.from_pretrained(root / "tokenizer"), CLIPTokenizer.from_pretrained(root / "tokenizer_2")),
        (CLIPTextModel.from_pretrained(root / "text_encoder").eval(),
         CLIPTextModelWithProjection.from_pretrained(root / "text_encoder_2").eval()),
    )
    return encoder, UNet2DConditionModel.from_pretrained(root / "unet").eval()


COMFY_WINDOWS = """
import json, sys
sys.argv = ["main.py", "--cpu"]
sys.path.insert(0, {host!r})
import comfy.options
comfy.options.enable_args_parsing()
from comfy.sdxl_clip import SDXLTokenizer
tokens = SDXLTokenizer().tokenize_with_weights({caption!r})
print(json.dumps({{key: [[int(t[0]) for t in window] for window in windows] for key, windows in tokens.items()}}))
"""


def test_windows_match_comfyui_for_both_encoders() -> None:
    """ComfyUI's SDXL tokenizer (CLIP-L pads with EOS, bigG with "!") cuts a long prompt into
    the same 77-token windows as training does, so inference sees what training saw."""
    from transformers import CLIPTokenizer

    host = host_dir(HOST_VERSIONS[0])
    code = COMFY_WINDOWS.format(host=str(host), caption=LONG_CAPTION)
    done = subprocess.run([sys.executable, "-c", code], cwd=host, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    comfy = json.loads(done.stdout.strip().splitlines()[-1])
    release = cached_release("plain")
    for key, folder in (("l", "tokenizer"), ("g", "tokenizer_2")):
        ours, cut = token_windows(CLIPTokenizer.from_pretrained(release / folder), LONG_CAPTION, 77, truncate=False)
        assert not cut
        assert len(ours) >= 2
        assert ours == comfy[key], key


def test_long_caption_is_encoded_in_windows_pooled_from_the_first(tiny) -> None:
    encoder, _ = tiny
    windows = [token_windows(t, LONG_CAPTION, 77, truncate=False)[0] for t in encoder.tokenizers]
    count = len(windows[0])
    assert count >= 2 and all(len(w) == 77 for w in windows[0])
    full_ids = encoder.tokenizers[0](LONG_CAPTION, add_special_tokens=False).input_ids
    text_ids = [i for w in windows[0] for i in w[1:1 + 75]][: len(full_ids)]
    assert text_ids == full_ids  # nothing dropped, order kept

    encoded = encoder.encode([LONG_CAPTION])
    assert encoded.embeds.shape == (1, 77 * count, 16 + 32)
    assert encoded.mask is None and encoded.truncated == 0
    with torch.no_grad():
        per_window = []
        for index, model in enumerate(encoder.encoders):
            out = model(torch.tensor(windows[index]), output_hidden_states=True)
            per_window.append(out.hidden_states[-2])
        expected = torch.cat(per_window, dim=-1).reshape(1, 77 * count, -1)
        first_pooled = encoder.encoders[1](torch.tensor(windows[1][:1])).text_embeds
        last_pooled = encoder.encoders[1](torch.tensor(windows[1][-1:])).text_embeds
    assert torch.allclose(encoded.embeds, expected, atol=1e-5)
    assert torch.allclose(encoded.pooled, first_pooled, atol=1e-5)
    assert not torch.allclose(encoded.pooled, last_pooled, atol=1e-3)


def test_truncation_is_explicit_and_counted(tiny) -> None:
    encoder, _ = tiny
    cutting = TextEncoder(encoder.tokenizers, encoder.encoders, truncate=True)
    encoded = cutting.encode([LONG_CAPTION, SHORT_CAPTION])
    assert encoded.embeds.shape[1] == 77
    assert encoded.truncated == 1
    chunked = encoder.encode([LONG_CAPTION])
    assert torch.allclose(encoded.embeds[0], chunked.embeds[0, :77], atol=1e-5)


def test_padded_batch_conditions_each_caption_as_alone(tiny) -> None:
    encoder, unet = tiny
    batch = encoder.encode([SHORT_CAPTION, LONG_CAPTION])
    assert batch.mask is not None
    assert batch.mask[0].sum() == 77 and batch.mask[1].all()
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    timesteps = torch.tensor([500, 500])
    time_ids = torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)
    with torch.no_grad():
        together = unet_eps(unet, latents, timesteps, batch.embeds, batch.pooled, time_ids, batch.mask)
        for row, caption in enumerate((SHORT_CAPTION, LONG_CAPTION)):
            alone = encoder.encode([caption])
            single = unet_eps(unet, latents[row:row + 1], timesteps[:1], alone.embeds, alone.pooled, time_ids[:1], None)
            assert torch.allclose(together[row], single[0], atol=1e-5)
        unmasked = unet_eps(unet, latents, timesteps, batch.embeds, batch.pooled, time_ids, None)
    assert not torch.allclose(unmasked[0], together[0], atol=1e-4)  # the mask is what makes it equal


def test_collate_without_padding_has_no_mask() -> None:
    items = [(torch.ones(77, 4), torch.ones(3), False), (torch.zeros(77, 4), torch.zeros(3), True)]
    encoded = collate_text(items)
    assert encoded.mask is None and encoded.truncated == 1 and encoded.embeds.shape == (2, 77, 4)


def _take(sampler: StreamSampler, batches: int) -> list[list[tuple[int, int]]]:
    iterator = iter(sampler)
    return [next(iterator) for _ in range(batches)]


def test_stream_splits_steps_over_processes_and_resumes() -> None:
    size, steps = 7, 6
    single = _take(StreamSampler(size, 4, 1, 1, 0, seed=3, start=StreamPosition(0, 0)), steps)
    ranks = [_take(StreamSampler(size, 1, 2, 2, rank, seed=3, start=StreamPosition(0, 0)), 2 * steps)
             for rank in range(2)]
    for step in range(steps):
        shards = [sorted(pair for batch in ranks[r][2 * step:2 * step + 2] for pair in batch) for r in range(2)]
        assert not set(shards[0]) & set(shards[1])
        assert sorted(shards[0] + shards[1]) == sorted(single[step])
    stream = [index for batch in single for _, index in batch]
    for epoch in range(3):
        assert sorted(stream[epoch * size:(epoch + 1) * size]) == list(range(size))
    assert stream[:size] != stream[size:2 * size]  # each epoch is reshuffled

    sampler = StreamSampler(size, 4, 1, 1, 0, seed=3, start=StreamPosition(0, 0))
    position = sampler.position_after(4)
    assert position == StreamPosition(2, 2)
    resumed = _take(StreamSampler(size, 4, 1, 1, 0, seed=3, start=position), 2)
    assert resumed == single[4:6]


def test_config_file_flags_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("pretrained_model: /models/sdxl\ndata_dir: /data/images\noutput_dir: /runs/a\n"
                    "learning_rate: 1\nuse_ema: true\nvalidation_prompts: [a face, another face]\n")
    config = parse_config(["--config", str(path), "--learning-rate", "2e-6", "--no-use-ema",
                           "--resume-from-checkpoint", "none"])
    assert config.learning_rate == 2e-6 and config.use_ema is False
    assert config.resume_from_checkpoint is None
    assert config.validation_prompts == ("a face", "another face")
    assert config.resolution == 1024 and config.total_batch_size == 96  # the paper's defaults
    assert config.gradient_accumulation_steps(8) == 12
    with pytest.raises(ValueError, match="cannot be split over 5"):
        config.gradient_accumulation_steps(5)

    path.write_text("pretrained_model: x\nlearnig_rate: 1e-5\n")
    with pytest.raises(ValueError, match="did you mean 'learning_rate'"):
        parse_config(["--config", str(path)])
    with pytest.raises(ValueError, match="data_dir is required.*\n.*output_dir is required"):
        parse_config(["--pretrained-model", "x"])
    bad = Stage1Config(pretrained_model="a", data_dir="b", output_dir="c", resolution=100, mixed_precision="fp8")
    with pytest.raises(ValueError, match="multiple of 8.*\n.*mixed_precision must be one of no, fp16, bf16"):
        bad.validate()
