"""Release folder reading: weight file selection, shards, variants, corrupt files, model families.

The releases here are made of small safetensors files holding only the tensors the checks read
(real diffusers key names, tiny shapes) plus config.json files; the real tokenizer files come
from the ComfyUI host. Nothing builds a model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from authface_core.errors import ModelFileError
from authface_core.release import (
    MODEL_COMPONENTS,
    check_release,
    clip_text_keys,
    find_weight_files,
    load_checked_state_dict,
    load_component_state_dict,
)

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / ".cache/hosts/comfyui-0.30.0/comfy/sd1_tokenizer"
ATTN = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"
DIFFUSERS_FILE = "diffusion_pytorch_model.safetensors"
TRANSFORMERS_FILE = "model.safetensors"


def _shapes(context: int = 48, pooled: int = 24, time_dim: int = 4, hidden: tuple[int, int] = (16, 32)) -> dict:
    """Tensor shapes of a consistent small SDXL-like release (CLIP-L + bigG widths sum to context)."""
    add_inputs = 6 * time_dim + pooled
    return {
        "unet": {"conv_in.weight": (8, 4, 3, 3), "add_embedding.linear_1.weight": (16, add_inputs), ATTN: (8, context)},
        "controlnet": {
            "conv_in.weight": (8, 4, 3, 3),
            "controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3),
            "add_embedding.linear_1.weight": (16, add_inputs),
            ATTN: (8, context),
        },
        "vae": {"decoder.conv_in.weight": (8, 4, 3, 3), "post_quant_conv.weight": (4, 4, 1, 1)},
        "text_encoder": {"text_model.embeddings.token_embedding.weight": (10, hidden[0])},
        "text_encoder_2": {
            "text_model.embeddings.token_embedding.weight": (10, hidden[1]),
            "text_projection.weight": (pooled, hidden[1]),
        },
    }


def _configs(context: int = 48, time_dim: int = 4) -> dict:
    return {
        "unet": {"_class_name": "UNet2DConditionModel", "cross_attention_dim": context,
                 "addition_embed_type": "text_time", "addition_time_embed_dim": time_dim},
        "controlnet": {"_class_name": "ControlNetModel", "cross_attention_dim": context},
        "vae": {"_class_name": "AutoencoderKL", "latent_channels": 4},
        "text_encoder": {"architectures": ["CLIPTextModel"]},
        "text_encoder_2": {"architectures": ["CLIPTextModelWithProjection"]},
    }


def _tensors(shapes: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}


def _file_name(component: str) -> str:
    return TRANSFORMERS_FILE if component.startswith("text_encoder") else DIFFUSERS_FILE


def make_release(root: Path, shapes: dict | None = None, configs: dict | None = None) -> Path:
    shapes = shapes or _shapes()
    configs = configs or _configs()
    for component in MODEL_COMPONENTS:
        folder = root / component
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(configs[component]))
        save_file(_tensors(shapes[component]), str(folder / _file_name(component)))
    for name in ("tokenizer", "tokenizer_2"):
        shutil.copytree(TOKENIZER_DIR, root / name)
    return root


def test_good_release_is_described(tmp_path: Path) -> None:
    root = make_release(tmp_path / "release")
    layout = check_release(root)
    assert layout.cross_attention_dim == 48
    assert layout.pooled_dim == 24
    assert layout.add_embedding_inputs == 6 * 4 + 24
    assert layout.latent_channels == 4
    assert not layout.full_size_sdxl
    assert layout.scheduler_config is None
    assert layout.components["unet"].files == (root / "unet" / DIFFUSERS_FILE,)
    assert layout.components["text_encoder_2"].files == (root / "text_encoder_2" / TRANSFORMERS_FILE,)
    assert not layout.components["unet"].fp16
    assert layout.tokenizers["tokenizer_2"] == root / "tokenizer_2"

    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text("{}")
    assert check_release(root).scheduler_config == root / "scheduler" / "scheduler_config.json"


def test_full_size_sdxl_widths_are_recognised(tmp_path: Path) -> None:
    root = make_release(
        tmp_path / "release",
        _shapes(context=2048, pooled=1280, time_dim=256, hidden=(768, 1280)),
        _configs(context=2048, time_dim=256),
    )
    layout = check_release(root)
    assert layout.full_size_sdxl
    assert (layout.cross_attention_dim, layout.pooled_dim, layout.add_embedding_inputs) == (2048, 1280, 2816)


def test_transformers5_clip_keys_without_prefix_are_accepted(tmp_path: Path) -> None:
    shapes = _shapes()
    shapes["text_encoder"] = {"embeddings.token_embedding.weight": (10, 16)}
    layout = check_release(make_release(tmp_path / "release", shapes))
    assert layout.cross_attention_dim == 48


def test_clip_text_keys_moves_only_transformer_keys() -> None:
    state = {
        "embeddings.token_embedding.weight": torch.zeros(1),
        "text_model.encoder.layers.0.mlp.fc1.weight": torch.ones(1),
        "text_projection.weight": torch.full((1,), 2.0),
    }
    prefixed = clip_text_keys(state, prefixed=True)
    assert sorted(prefixed) == [
        "text_model.embeddings.token_embedding.weight",
        "text_model.encoder.layers.0.mlp.fc1.weight",
        "text_projection.weight",
    ]
    bare = clip_text_keys(state, prefixed=False)
    assert sorted(bare) == ["embeddings.token_embedding.weight", "encoder.layers.0.mlp.fc1.weight", "text_projection.weight"]
    assert bare["encoder.layers.0.mlp.fc1.weight"] is state["text_model.encoder.layers.0.mlp.fc1.weight"]


def test_missing_release_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist") as info:
        check_release(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_every_missing_part_is_listed(tmp_path: Path) -> None:
    root = make_release(tmp_path / "release")
    shutil.rmtree(root / "controlnet")
    (root / "tokenizer_2" / "merges.txt").unlink()
    with pytest.raises(ModelFileError) as info:
        check_release(root)
    message = str(info.value)
    assert "controlnet/" in message and "ControlNet" in message
    assert "tokenizer_2/merges.txt" in message


def test_missing_config_is_named(tmp_path: Path) -> None:
    root = make_release(tmp_path / "release")
    (root / "vae" / "config.json").unlink()
    with pytest.raises(ModelFileError, match="config.json") as info:
        check_release(root)
    assert str(root / "vae" / "config.json") in str(info.value)


def _write_shards(folder: Path, tensors: dict[str, torch.Tensor], stem: str = "diffusion_pytorch_model",
                  index_name: str = "diffusion_pytorch_model.safetensors.index.json") -> list[Path]:
    keys = sorted(tensors)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
    shards = [folder / f"{stem}-{i + 1:05d}-of-00002.safetensors" for i in range(2)]
    weight_map = {}
    for shard, part in zip(shards, halves):
        save_file({k: tensors[k] for k in part}, str(shard))
        weight_map.update({k: shard.name for k in part})
    (folder / index_name).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return shards


def test_sharded_weights_are_merged(tmp_path: Path) -> None:
    root = make_release(tmp_path / "release")
    folder = root / "unet"
    (folder / DIFFUSERS_FILE).unlink()
    tensors = _tensors(_shapes()["unet"], seed=3)
    shards = _write_shards(folder, tensors)
    assert find_weight_files(folder) == shards
    state = load_component_state_dict(root, "unet")
    assert sorted(state) == sorted(tensors)
    assert all(torch.equal(state[k], tensors[k]) for k in tensors)
    layout = check_release(root)
    assert layout.components["unet"].index == folder / "diffusion_pytorch_model.safetensors.index.json"
    assert sorted(load_checked_state_dict(layout, "unet")) == sorted(tensors)


def test_index_with_missing_shard_names_it(tmp_path: Path) -> None:
    root = make_release(tmp_path / "release")
    folder = root / "unet"
    (folder / DIFFUSERS_FILE).unlink()
    shards = _write_shards(folder, _tensors(_shapes()["unet"]))
    shards[1].unlink()
    for call in (lambda: find_weight_files(folder), lambda: check_release(root), lambda: load_component_state_dict(root, "unet")):
        with pytest.raises(ModelFileError) as info:
            call()
        assert shards[1].name in str(info.value)
        assert "index" in str(info.value)


def test_shards_without_index_ask_for_it(tmp_path: Path) -> None:
    folder = tmp_path / "unet"
    folder.mkdir()
    _write_shards(folder, _tensors(_shapes()["unet"]))
    (folder / "diffusion_pytorch_model.safetensors.index.json").unlink()
    with pytest.raises(ModelFileError, match="no index file"):
        find_weight_files(folder)


def test_full_precision_is_preferred_unless_fp16_asked(tmp_path: Path) -> None:
    folder = tmp_path / "unet"
    folder.mkdir()
    full = folder / DIFFUSERS_FILE
    half = folder / "diffusion_pytorch_model.fp16.safetensors"
    tensors = _tensors(_shapes()["unet"])
    save_file(tensors, str(full))
    save_file({k: v.half() for k, v in tensors.items()}, str(half))
    assert find_weight_files(folder) == [full]
    assert find_weight_files(folder, prefer_fp16=True) == [half]
    full.unlink()
    assert find_weight_files(folder) == [half]


def test_fp16_shard_index_is_the_fp16_variant(tmp_path: Path) -> None:
    root = make_release(tmp_path / "release")
    folder = root / "unet"
    tensors = {k: v.half() for k, v in _tensors(_shapes()["unet"]).items()}
    shards = _write_shards(
        folder, tensors, stem="diffusion_pytorch_model.fp16", index_name="diffusion_pytorch_model.safetensors.index.fp16.json"
    )
    assert find_weight_files(folder) == [folder / DIFFUSERS_FILE]
    assert find_weight_files(folder, prefer_fp16=True) == shards
    layout = check_release(root, prefer_fp16=True)
    assert layout.components["unet"].fp16
    assert load_checked_state_dict(layout, "unet")[ATTN].dtype == torch.float16


def test_truncated_file_is_named(tmp_path: Path) -> None:
    root = make_release(tmp_path / "release")
    path = root / "controlnet" / DIFFUSERS_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    for call in (lambda: check_release(root), lambda: load_component_state_dict(root, "controlnet")):
        with pytest.raises(ModelFileError, match="truncated or corrupt") as info:
            call()
        assert str(path) in str(info.value)


def test_pickle_only_folder_is_refused_with_conversion_advice(tmp_path: Path) -> None:
    root = make_release(tmp_path / "release")
    folder = root / "text_encoder"
    (folder / TRANSFORMERS_FILE).unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    for call in (lambda: check_release(root), lambda: load_component_state_dict(root, "text_encoder")):
        with pytest.raises(ModelFileError) as info:
            call()
        message = str(info.value)
        assert "pytorch_model.bin" in message and "safetensors" in message and "save_pretrained" in message


def test_several_unrelated_files_are_ambiguous(tmp_path: Path) -> None:
    folder = tmp_path / "vae"
    folder.mkdir()
    save_file({"a": torch.zeros(1)}, str(folder / "one.safetensors"))
    save_file({"a": torch.zeros(1)}, str(folder / "two.safetensors"))
    with pytest.raises(ModelFileError, match="several weight files") as info:
        find_weight_files(folder)
    assert "one.safetensors" in str(info.value) and "two.safetensors" in str(info.value)


def test_sd15_unet_is_refused(tmp_path: Path) -> None:
    shapes = _shapes()
    shapes["unet"] = {"conv_in.weight": (320, 4, 3, 3), ATTN: (320, 768)}
    configs = _configs()
    configs["unet"] = {"_class_name": "UNet2DConditionModel", "cross_attention_dim": 768}
    root = make_release(tmp_path / "release", shapes, configs)
    with pytest.raises(ModelFileError) as info:
        check_release(root)
    message = str(info.value)
    assert str(root / "unet" / DIFFUSERS_FILE) in message
    assert "not an SDXL-family UNet" in message and "add_embedding" in message and "SD1.x" in message


def test_unet_for_other_text_encoders_is_refused(tmp_path: Path) -> None:
    shapes = _shapes()
    shapes["unet"][ATTN] = (8, 1280)
    configs = _configs()
    configs["unet"]["cross_attention_dim"] = 1280
    with pytest.raises(ModelFileError, match="refiner"):
        check_release(make_release(tmp_path / "release", shapes, configs))


def test_config_disagreeing_with_weights_is_refused(tmp_path: Path) -> None:
    configs = _configs()
    configs["unet"]["cross_attention_dim"] = 2048
    with pytest.raises(ModelFileError, match="cross_attention_dim 2048 but the weights"):
        check_release(make_release(tmp_path / "release", configs=configs))


def test_sd15_controlnet_is_refused(tmp_path: Path) -> None:
    shapes = _shapes()
    shapes["controlnet"] = {
        "conv_in.weight": (320, 4, 3, 3),
        "controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3),
        ATTN: (320, 768),
    }
    root = make_release(tmp_path / "release", shapes)
    with pytest.raises(ModelFileError) as info:
        check_release(root)
    message = str(info.value)
    assert str(root / "controlnet" / DIFFUSERS_FILE) in message
    assert "not an SDXL ControlNet" in message and "SD1.x" in message


def test_controlnet_without_rgb_hint_conv_is_refused(tmp_path: Path) -> None:
    shapes = _shapes()
    del shapes["controlnet"]["controlnet_cond_embedding.conv_in.weight"]
    with pytest.raises(ModelFileError, match="controlnet_cond_embedding.conv_in.weight"):
        check_release(make_release(tmp_path / "a", shapes))
    shapes = _shapes()
    shapes["controlnet"]["controlnet_cond_embedding.conv_in.weight"] = (16, 1, 3, 3)
    with pytest.raises(ModelFileError, match="1-channel hint"):
        check_release(make_release(tmp_path / "b", shapes))


def test_text_encoder_2_needs_its_projection(tmp_path: Path) -> None:
    shapes = _shapes()
    del shapes["text_encoder_2"]["text_projection.weight"]
    with pytest.raises(ModelFileError, match="CLIPTextModelWithProjection"):
        check_release(make_release(tmp_path / "release", shapes))


def test_vae_with_other_latent_channels_is_refused(tmp_path: Path) -> None:
    shapes = _shapes()
    shapes["vae"]["decoder.conv_in.weight"] = (8, 16, 3, 3)
    with pytest.raises(ModelFileError, match="16 latent channels"):
        check_release(make_release(tmp_path / "release", shapes))


def test_unknown_component_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown release part"):
        load_component_state_dict(tmp_path, "tokenizer")
