"""ComfyUI entry point of ComfyUI-AuthFace.

Registers the pack's nodes through ComfyUI's V3 extension API (``comfy_entrypoint``). Importing
this module loads neither dlib, insightface nor diffusers: nodes import what they need when they
run, so ComfyUI starts fast and a missing optional package disables only the nodes that need it.
"""

import os
import sys

# The library packages (authface_core, training) sit beside this file; ComfyUI imports the pack
# under its folder name, so make them importable by their own names, behind anything installed.
_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    sys.path.append(_PACK_DIR)

try:
    import comfy_api  # noqa: F401  (importable only inside a ComfyUI process)
except ImportError:
    # Imported outside ComfyUI, e.g. by pytest collecting the repository: there is nothing to register.
    __all__: list[str] = []
else:
    from .nodes.extension import comfy_entrypoint

    __all__ = ["comfy_entrypoint"]
