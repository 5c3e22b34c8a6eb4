"""Regenerate every UI workflow in workflows/ from its API source in workflows/api/, against a real
ComfyUI host started with this pack (``.venv/bin/python tools/refresh_ui_workflows.py``)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tools")]

from comfy_host import HOST_VERSIONS, ComfyHost  # noqa: E402
from make_ui_workflow import api_to_ui  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as base:
        host = ComfyHost(version=HOST_VERSIONS[0], base_dir=Path(base)).start()
        try:
            info = host.object_info()
        finally:
            host.stop()
    for api_file in sorted((REPO / "workflows" / "api").glob("*.json")):
        ui = api_to_ui(json.loads(api_file.read_text()), info)
        target = REPO / "workflows" / api_file.name
        target.write_text(json.dumps(ui, indent=1) + "\n")
        print(f"wrote {target.relative_to(REPO)}")


if __name__ == "__main__":
    main()
