"""AuthFace core library: faces, masks, colour fix, losses and model I/O. Never imports ComfyUI."""

__version__ = "0.1.0"
