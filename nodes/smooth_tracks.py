"""AuthFaceSmoothTracks: a video track's alignment smoothed over its frames, so landmark jitter
does not shake the crop (the One Euro filter of authface_core.video.smoothing)."""

from __future__ import annotations

from comfy_api.v0_0_2 import io

from authface_core.faces.types import FaceSet
from authface_core.video.smoothing import OneEuroSettings, smooth_face_tracks

from .sockets import Faces


class AuthFaceSmoothTracks(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        defaults = OneEuroSettings()
        return io.Schema(
            node_id="AuthFaceSmoothTracks",
            display_name="AuthFace Smooth Tracks",
            category="AuthFace/faces",
            description="Smooths the alignment of each face track over the frames of a video, so "
            "landmark jitter does not shake the crops (and the restored faces). Put it between "
            "Detect Faces (order=track) and Align Faces, with the same method as Align Faces.",
            inputs=[
                Faces.Input("faces", tooltip="faces of a frame batch from Detect Faces with order=track"),
                io.Float.Input("fps", default=25.0, min=0.01, max=1000.0, step=0.01,
                               tooltip="frame rate of the clip (GetVideoComponents' fps)"),
                io.Combo.Input("method", options=["ffhq", "five_point"], default="ffhq",
                               tooltip="the alignment method Align Faces will use"),
                io.Float.Input("min_cutoff", default=defaults.min_cutoff, min=0.001, max=100.0, step=0.01,
                               tooltip="One Euro cutoff (Hz) of a still face: lower is steadier, with more lag"),
                io.Float.Input("beta", default=defaults.beta, min=0.0, max=1000.0, step=0.1,
                               tooltip="how fast the cutoff rises with motion: higher follows moves with less lag"),
            ],
            outputs=[Faces.Output("smoothed_faces", display_name="faces")],
        )

    @classmethod
    def execute(cls, faces: FaceSet, fps: float, method: str, min_cutoff: float, beta: float) -> io.NodeOutput:
        settings = OneEuroSettings(min_cutoff=min_cutoff, beta=beta)
        return io.NodeOutput(smooth_face_tracks(faces, method, fps, settings))
