"""``authface_core/`` and ``training/`` work without ComfyUI: none of their modules imports it.

Two checks: a static scan of every import statement (it also sees imports inside functions,
which importing a module does not run), and a real import of every module in a fresh
interpreter that has the ComfyUI host on its path, so that an import of ComfyUI would succeed
there and is caught by looking at ``sys.modules`` afterwards.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from comfy_host import HOST_VERSIONS, REPO, host_dir

LIBRARIES = ("authface_core", "training")
# ComfyUI's top-level modules (its source tree, 0.3.75 and 0.30.0); ``nodes`` is also the name
# of this pack's ComfyUI adapters, which the libraries must not import either.
COMFY_MODULES = frozenset({"comfy", "comfy_api", "comfy_extras", "comfy_execution", "comfy_config",
                           "folder_paths", "nodes", "server", "execution", "latent_preview",
                           "node_helpers", "comfyui_version"})

IMPORT_ALL = """
import importlib, json, pkgutil, sys
sys.path[:0] = [{repo!r}, {host!r}]
names, failed = [], {{}}
for lib in {libraries!r}:
    package = importlib.import_module(lib)
    names.append(lib)
    for info in pkgutil.walk_packages(package.__path__, lib + "."):
        names.append(info.name)
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # a ComfyUI import can fail in other ways (no GPU, no args)
            failed[info.name] = repr(exc)
comfy = sorted(m for m in sys.modules if m.split(".")[0] in {comfy!r})
print(json.dumps({{"modules": names, "failed": failed, "comfy": comfy}}))
"""


def comfy_imports(source: str, label: str) -> list[str]:
    """``label:line module`` for every absolute import of a ComfyUI module in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in COMFY_MODULES]
    return [f"{label}:{line} {name}" for line, name in sorted(found)]


def test_scanner_flags_every_form_of_comfy_import():
    source = ("import os\ndef f():\n    import comfy.sd\n    from folder_paths import get_full_path\n"
              "from comfy_api.v0_0_2 import io\nfrom .nodes import x\nimport nodes_helper\n")
    assert comfy_imports(source, "probe") == [
        "probe:3 comfy.sd", "probe:4 folder_paths", "probe:5 comfy_api.v0_0_2"]


def test_no_library_source_imports_comfyui():
    files = sorted(p for lib in LIBRARIES for p in (REPO / lib).rglob("*.py"))
    assert len(files) > 50, files  # both libraries were found
    offenders = [hit for path in files
                 for hit in comfy_imports(path.read_text(), str(path.relative_to(REPO)))]
    assert not offenders, f"authface_core/ and training/ must not import ComfyUI: {offenders}"


def test_importing_every_library_module_loads_no_comfyui():
    code = IMPORT_ALL.format(repo=str(REPO), host=str(host_dir(HOST_VERSIONS[0])),
                             libraries=LIBRARIES, comfy=sorted(COMFY_MODULES))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["modules"]) > 50, report["modules"]
    assert not report["failed"], f"modules that do not import: {report['failed']}"
    assert not report["comfy"], f"importing authface_core/training loaded ComfyUI: {report['comfy']}"
