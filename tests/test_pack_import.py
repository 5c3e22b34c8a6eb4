"""Importing the pack the way ComfyUI does: fast, nothing heavy, nodes registered; a missing
optional dependency fails only the node that needs it, with the install command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from comfy_host import HOST_VERSIONS, REPO, host_dir

LOAD_PACK = """
import asyncio, importlib.util, json, sys, time
sys.argv = ["main.py", "--cpu"]
sys.path.insert(0, {host!r})
import comfy.options
comfy.options.enable_args_parsing()
{blocker}
import comfy.model_management, folder_paths, nodes  # what ComfyUI has imported before custom nodes
before = set(sys.modules)
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("ComfyUI-AuthFace", {init!r}, submodule_search_locations=[{repo!r}])
module = importlib.util.module_from_spec(spec)
sys.modules["ComfyUI-AuthFace"] = module
spec.loader.exec_module(module)
elapsed = time.perf_counter() - start
extension = asyncio.run(module.comfy_entrypoint())
node_list = asyncio.run(extension.get_node_list())
for node in node_list:
    node.GET_NODE_INFO_V1()  # what /object_info serves: runs the host's schema validation
error = None
detect = [n for n in node_list if n.__name__ == "AuthFaceDetectFaces"][0]
if {run_detect}:
    import torch
    try:
        detect.execute(torch.zeros((1, 64, 64, 3)), "dlib", "all", 0, "0", 0, "left_to_right")
    except Exception as exc:
        error = f"{{type(exc).__name__}}: {{exc}}"
print(json.dumps({{"seconds": elapsed, "nodes": sorted(n.__name__ for n in node_list),
                  "new_modules": sorted(set(sys.modules) - before), "error": error}}))
"""

BLOCK_DLIB = """
import importlib.abc
class _NoDlib(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "dlib" or name.startswith("dlib."):
            raise ModuleNotFoundError("No module named 'dlib'", name="dlib")
        return None
sys.meta_path.insert(0, _NoDlib())
"""


def load_pack(version: str, block_dlib: bool = False, run_detect: bool = False) -> dict:
    host = host_dir(version)
    code = LOAD_PACK.format(host=str(host), init=str(REPO / "__init__.py"), repo=str(REPO),
                            blocker=BLOCK_DLIB if block_dlib else "", run_detect=run_detect)
    done = subprocess.run([sys.executable, "-c", code], cwd=host, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("version", HOST_VERSIONS)
def test_import_registers_nodes_without_heavy_modules(version: str) -> None:
    result = load_pack(version)
    print(f"ComfyUI {version}: pack import {result['seconds'] * 1000:.0f} ms, nodes {result['nodes']}")
    assert {"AuthFaceDetectFaces", "AuthFaceAlignFaces", "AuthFaceRegionMasks",
            "AuthFacePasteFaces"} <= set(result["nodes"])
    heavy = [m for m in result["new_modules"] if m.split(".")[0] in {"dlib", "insightface", "diffusers", "onnxruntime"}]
    assert heavy == []


def test_missing_dlib_fails_only_detection_with_install_hint() -> None:
    result = load_pack(HOST_VERSIONS[0], block_dlib=True, run_detect=True)
    assert "AuthFaceDetectFaces" in result["nodes"]
    assert result["error"] is not None
    assert "MissingDependencyError" in result["error"]
    assert "pip install dlib-bin" in result["error"]
