"""Custom ComfyUI socket types of the pack."""

from comfy_api.v0_0_2 import io

# Carries an authface_core.faces.types.FaceSet: detections and, after alignment, their matrices.
Faces = io.Custom("AUTHFACE_FACES")
