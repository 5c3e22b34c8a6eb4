"""Shared workflows against the real hosts' /object_info: node types exist, inputs are declared,
links join matching types, and the UI files are current with their API sources."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from comfy_host import HOST_VERSIONS, REPO, ComfyHost

sys.path.insert(0, str(REPO / "tools"))
from make_ui_workflow import api_to_ui  # noqa: E402

pytestmark = pytest.mark.host

API_FILES = sorted((REPO / "workflows" / "api").glob("*.json"))
UI_FILES = sorted((REPO / "workflows").glob("*.json"))


def declared_inputs(spec: dict) -> dict:
    return {**spec["input"].get("required", {}), **spec["input"].get("optional", {})}


def test_every_api_workflow_has_a_ui_twin() -> None:
    assert API_FILES, "no API workflows"
    assert {p.name for p in API_FILES} == {p.name for p in UI_FILES}


@pytest.mark.parametrize("path", API_FILES, ids=lambda p: p.stem)
def test_api_workflow_matches_object_info(comfy_host: ComfyHost, path: Path) -> None:
    info = comfy_host.object_info()
    prompt = json.loads(path.read_text())
    for node_id, node in prompt.items():
        spec = info.get(node["class_type"])
        assert spec is not None, f"{path.name}: node {node_id} type {node['class_type']} unknown"
        inputs = declared_inputs(spec)
        assert set(node["inputs"]) <= set(inputs), f"{path.name}: node {node_id} has undeclared inputs"
        required = set(spec["input"].get("required", {}))
        assert required <= set(node["inputs"]), f"{path.name}: node {node_id} misses {required - set(node['inputs'])}"
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                source = prompt[value[0]]
                produced = info[source["class_type"]]["output"][value[1]]
                expected = inputs[name][0]
                assert produced == expected or expected == "*", (
                    f"{path.name}: {source['class_type']}[{value[1]}] gives {produced}, "
                    f"{node['class_type']}.{name} takes {expected}")


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_ui_workflow_types_and_links(comfy_host: ComfyHost, path: Path) -> None:
    info = comfy_host.object_info()
    ui = json.loads(path.read_text())
    nodes = {node["id"]: node for node in ui["nodes"]}
    for node in ui["nodes"]:
        assert node["type"] in info, f"{path.name}: node type {node['type']} unknown (red node)"
    for link_id, source_id, source_slot, target_id, target_slot, kind in ui["links"]:
        source, target = nodes[source_id], nodes[target_id]
        produced = info[source["type"]]["output"][source_slot]
        slot = target["inputs"][target_slot]
        expected = declared_inputs(info[target["type"]])[slot["name"]][0]
        assert kind == produced == slot["type"], f"{path.name}: link {link_id} type mismatch"
        assert expected == produced, f"{path.name}: link {link_id} joins {produced} to {expected}"
        assert slot["link"] == link_id
        assert link_id in source["outputs"][source_slot]["links"]


def widgets_and_links(ui: dict) -> tuple:
    """What decides how a UI workflow loads: each node's type and widget values, and the links."""
    return [(n["id"], n["type"], n["widgets_values"]) for n in ui["nodes"]], ui["links"]


@pytest.mark.parametrize("path", API_FILES, ids=lambda p: p.stem)
def test_ui_workflow_is_current(comfy_host: ComfyHost, path: Path) -> None:
    """The committed UI file is exactly what the current host generates; on the oldest host the
    same links and widget values come out (node heights may differ with its extra inputs), except
    trailing widgets of optional inputs the oldest host does not have yet (CreateVideo's
    bit_depth), which its page ignores."""
    expected = api_to_ui(json.loads(path.read_text()), comfy_host.object_info())
    committed = json.loads((REPO / "workflows" / path.name).read_text())
    if comfy_host.version == HOST_VERSIONS[0]:
        assert committed == expected, f"workflows/{path.name} is stale: run tools/refresh_ui_workflows.py"
    else:
        (ours, our_links), (old, old_links) = widgets_and_links(committed), widgets_and_links(expected)
        assert our_links == old_links
        assert [(i, kind) for i, kind, _ in ours] == [(i, kind) for i, kind, _ in old]
        for (_, kind, values), (_, _, old_values) in zip(ours, old):
            assert values[: len(old_values)] == old_values, f"{kind}: widgets {values} vs {old_values}"
