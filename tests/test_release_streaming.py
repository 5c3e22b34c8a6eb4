"""Loading a release part into a model a host builds, tensor by tensor (authface_core.release.host
and .streaming): exact values, tags that survive the host's dtype, shards, truncated files, and
weights the host leaves out. The "host" here is torch's own load_state_dict (a copy, as ComfyUI's
loaders do on CPU) into a module whose names differ from the release's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from authface_core.errors import ModelFileError
from authface_core.release.files import select_weights
from authface_core.release.host import load_streamed
from authface_core.release.streaming import MAX_TAGS, placeholders, read_into, tag_value, tensor_locations

FILE = "diffusion_pytorch_model.safetensors"


def _release_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {f"blocks.{i}.{kind}": torch.randn(*(shape if kind == "weight" else shape[:1]), generator=g)
            for i, shape in enumerate([(6, 5), (7, 6), (3, 7)]) for kind in ("weight", "bias")}


class _HostModel(torch.nn.Module):
    """Module names differ from the release's (``layers.N`` for ``blocks.N``), like ComfyUI's."""

    def __init__(self, sizes: list[tuple[int, int]], dtype: torch.dtype) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(i, o, dtype=dtype) for o, i in sizes)


def _host_loader(sizes: list[tuple[int, int]], dtype: torch.dtype = torch.float32):
    def load(state: dict[str, torch.Tensor]) -> _HostModel:
        model = _HostModel(sizes, dtype)
        converted = {key.replace("blocks.", "layers."): state.pop(key) for key in list(state)
                     if int(key.split(".")[1]) < len(sizes)}
        model.load_state_dict(converted)
        return model
    return load


def _write(folder: Path, tensors: dict[str, torch.Tensor], shards: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if shards == 1:
        save_file(tensors, folder / FILE)
        return folder
    names = sorted(tensors)
    weight_map = {}
    for index in range(shards):
        shard = FILE.replace(".safetensors", f"-{index + 1:05}-of-{shards:05}.safetensors")
        part = {name: tensors[name] for name in names[index::shards]}
        save_file(part, folder / shard)
        weight_map.update(dict.fromkeys(part, shard))
    (folder / f"{FILE}.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def test_tags_survive_fp16_bf16_and_fp32() -> None:
    values = torch.tensor([tag_value(i) for i in range(MAX_TAGS)], dtype=torch.float64)
    assert len(set(values.tolist())) == MAX_TAGS and bool((values > 0).all())
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        assert torch.equal(values.to(dtype).double(), values), dtype


@pytest.mark.parametrize("shards", [1, 3])
@pytest.mark.parametrize("host_dtype", [torch.float32, torch.float16])
def test_streamed_model_equals_the_release(tmp_path: Path, shards: int, host_dtype: torch.dtype) -> None:
    tensors = _release_tensors()
    folder = _write(tmp_path / "unet", tensors, shards)
    state, _ = placeholders(tensor_locations(select_weights("unet", folder, False)))
    assert all(0 in t.stride() or t.numel() <= 1 for t in state.values() if t.ndim)  # no memory behind them
    model = load_streamed("UNet", select_weights("unet", folder, False),
                          _host_loader([(6, 5), (7, 6), (3, 7)], host_dtype), lambda m: m)
    loaded = model.state_dict()
    for key, value in tensors.items():
        assert torch.equal(loaded[key.replace("blocks.", "layers.")], value.to(host_dtype)), key


def test_weights_the_host_leaves_out_are_named(tmp_path: Path) -> None:
    folder = _write(tmp_path / "unet", _release_tensors())
    with pytest.raises(ModelFileError, match=r"UNet .*2 tensor\(s\) were not taken: blocks\.2\.bias, blocks\.2\.weight"):
        load_streamed("UNet", select_weights("unet", folder, False), _host_loader([(6, 5), (7, 6)]), lambda m: m)


def test_read_into_casts_and_refuses_a_truncated_file(tmp_path: Path) -> None:
    tensors = _release_tensors()
    folder = _write(tmp_path / "unet", tensors)
    where = tensor_locations(select_weights("unet", folder, False))["blocks.1.weight"]
    out = torch.empty(7, 6, dtype=torch.float16)
    read_into(where, out)
    assert torch.equal(out, load_file(folder / FILE)["blocks.1.weight"].half())
    data = (folder / FILE).read_bytes()
    (folder / FILE).write_bytes(data[: where.start + 8])
    with pytest.raises(ModelFileError, match="truncated"):
        read_into(where, torch.empty(7, 6))


def test_a_host_that_changes_values_gets_the_weights_the_usual_way(tmp_path: Path) -> None:
    tensors = _release_tensors()
    folder = _write(tmp_path / "unet", tensors)
    sizes = [(6, 5), (7, 6), (3, 7)]

    def halving(state: dict[str, torch.Tensor]) -> _HostModel:
        model = _host_loader(sizes)(state)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(0.5)
        return model

    model = load_streamed("UNet", select_weights("unet", folder, False), halving, lambda m: m)
    assert torch.equal(model.layers[2].bias, tensors["blocks.2.bias"] * 0.5)
