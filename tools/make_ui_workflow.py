"""Build the UI-format workflow (what users drag into ComfyUI) from an API-format workflow.

The API format (``{id: {class_type, inputs}}``) is the source of truth in ``workflows/api/``;
the UI format needs each node's sockets and widget order, which this tool reads from a real
host's ``/object_info``:

    python tools/make_ui_workflow.py workflows/api/NAME.json --host http://127.0.0.1:8188 \
        -o workflows/NAME.json

``tests/test_workflows.py`` regenerates every UI workflow against the test hosts and checks the
committed file is current, every node type exists and every link joins matching types.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path
from typing import Any

# A V3 DynamicCombo (SaveVideo's codec on newer hosts) shows as a combo widget with its option key.
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "COMFY_DYNAMICCOMBO_V3"}
COLUMN_WIDTH, ROW_GAP, NODE_WIDTH = 380, 40, 340
# Width over height the layout aims for: a browser window's, so the page fits the whole graph at a
# zoom where node text is legible.
ASPECT = 2.2
# A node that shows its image (LoadImage) grows by about this much once the image is loaded.
IMAGE_PREVIEW_HEIGHT = 170


def _input_specs(info: dict) -> list[tuple[str, Any, dict]]:
    """(name, type, options) of a node's inputs in the order the UI lays out widgets."""
    specs = []
    for group in ("required", "optional"):
        for name, spec in info.get("input", {}).get(group, {}).items():
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs.append((name, "COMBO" if isinstance(kind, list) else kind, options))
    return specs


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _depths(api: dict) -> dict[str, int]:
    """Longest-path depth of each node from the sources."""
    depth: dict[str, int] = {}

    def visit(node_id: str) -> int:
        if node_id not in depth:
            parents = [v[0] for v in api[node_id]["inputs"].values() if _is_link(v)]
            depth[node_id] = 1 + max((visit(p) for p in parents), default=-1)
        return depth[node_id]

    for node_id in api:
        visit(node_id)
    return depth


def _layout(order: list[str], heights: dict[str, int]) -> dict[str, tuple[int, int]]:
    """(x, y) of each node: ``order`` (every node after its inputs) stacked top to bottom into
    columns about as tall as makes the whole graph ``ASPECT`` times wider than tall, so links run
    left to right or down a column."""
    stack = sum(heights[n] + ROW_GAP for n in order)
    column_height = max(max(heights.values()), round((stack * COLUMN_WIDTH / ASPECT) ** 0.5))
    positions: dict[str, tuple[int, int]] = {}
    column, y = 0, 0
    for node_id in order:
        if y and y + heights[node_id] > column_height:
            column, y = column + 1, 0
        positions[node_id] = (column * COLUMN_WIDTH, y)
        y += heights[node_id] + ROW_GAP
    return positions


def api_to_ui(api: dict, object_info: dict) -> dict:
    """Convert an API-format workflow to the UI (litegraph) format, using the host's node specs."""
    missing = sorted({n["class_type"] for n in api.values()} - set(object_info))
    if missing:
        raise ValueError(f"node types unknown to the host: {missing}")
    ids = {node_id: index + 1 for index, node_id in enumerate(api)}
    depths = _depths(api)
    links: list[list[Any]] = []
    nodes: list[dict] = []
    outputs_of: dict[str, list[dict]] = {}
    for node_id, node in api.items():
        info = object_info[node["class_type"]]
        outputs_of[node_id] = [
            {"name": name, "type": kind, "links": [], "slot_index": slot}
            for slot, (name, kind) in enumerate(zip(info.get("output_name", info["output"]), info["output"]))
        ]
    order = sorted(api, key=lambda node_id: depths[node_id])
    heights: dict[str, int] = {}
    for order_index, node_id in enumerate(order):
        node = api[node_id]
        info = object_info[node["class_type"]]
        inputs, widgets = [], []
        for name, kind, options in _input_specs(info):
            value = node["inputs"].get(name, options.get("default"))
            if kind in WIDGET_TYPES and not _is_link(value):
                widgets.append(value)
                if options.get("control_after_generate"):
                    widgets.append("fixed")
                if options.get("image_upload"):
                    widgets.append("image")
                continue
            slot = {"name": name, "type": kind, "link": None}
            if kind in WIDGET_TYPES:
                slot["widget"] = {"name": name}
            if _is_link(value):
                source, source_slot = value
                link_id = len(links) + 1
                source_output = outputs_of[source][source_slot]
                links.append([link_id, ids[source], source_slot, ids[node_id], len(inputs), source_output["type"]])
                source_output["links"].append(link_id)
                slot["link"] = link_id
            inputs.append(slot)
        heights[node_id] = 60 + 26 * (len(inputs) + len(widgets) + len(outputs_of[node_id]))
        if any(options.get("image_upload") for _, _, options in _input_specs(info)):
            heights[node_id] += IMAGE_PREVIEW_HEIGHT
        nodes.append({
            "id": ids[node_id],
            "type": node["class_type"],
            "pos": None,  # set by _layout once every node's height is known
            "size": [NODE_WIDTH, heights[node_id]],
            "flags": {},
            "order": order_index,
            "mode": 0,
            "title": node.get("_meta", {}).get("title", info.get("display_name", node["class_type"])),
            "inputs": inputs,
            "outputs": outputs_of[node_id],
            "properties": {"Node name for S&R": node["class_type"]},
            "widgets_values": widgets,
        })
    positions = _layout(order, heights)
    for node_id, node in zip(order, nodes):
        node["pos"] = list(positions[node_id])
    nodes.sort(key=lambda n: n["id"])
    return {
        "last_node_id": len(nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("api_workflow", type=Path)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--host", help="URL of a running ComfyUI with this pack loaded")
    source.add_argument("--object-info", type=Path, help="a saved /object_info JSON")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.host:
        with urllib.request.urlopen(args.host.rstrip("/") + "/object_info", timeout=60) as response:
            object_info = json.loads(response.read())
    else:
        object_info = json.loads(args.object_info.read_text())
    ui = api_to_ui(json.loads(args.api_workflow.read_text()), object_info)
    args.output.write_text(json.dumps(ui, indent=1) + "\n")


if __name__ == "__main__":
    main()
