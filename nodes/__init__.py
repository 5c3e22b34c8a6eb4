"""ComfyUI adapters of the pack: parse inputs, call ``authface_core``, wrap results."""
