"""AuthFaceDetectFaces: find faces and their 68 landmarks in every image of a batch."""

from __future__ import annotations

import logging

import torch
from comfy_api.v0_0_2 import io

from authface_core.faces.detect import get_detector
from authface_core.faces.draw import draw_faces
from authface_core.faces.select import select_faces
from authface_core.faces.types import FaceSet
from authface_core.video.tracking import track_faces
from authface_core.images import to_rgb_float

from .model_paths import insightface_root
from .runtime import images_to_numpy, numpy_to_images, with_progress
from .sockets import Faces

log = logging.getLogger("authface")

DETECTORS = ["dlib", "dlib_cnn", "insightface_buffalo_l", "insightface_antelopev2"]


def _parse_indices(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError as exc:
        raise ValueError(f"face_indices must be comma-separated integers like '0,2', got {text!r}") from exc


def _make_detector(name: str):
    if name.startswith("insightface_"):
        pack = name.removeprefix("insightface_")
        return get_detector("insightface", pack=pack, root=insightface_root(pack))
    return get_detector(name)


class AuthFaceDetectFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AuthFaceDetectFaces",
            display_name="AuthFace Detect Faces",
            category="AuthFace/faces",
            description="Finds every face (box, score, 68 landmarks) in each image of the batch. "
            "Images without a face pass with no faces; the count says how many were kept.",
            inputs=[
                io.Image.Input("image"),
                io.Combo.Input("detector", options=DETECTORS, default="dlib",
                               tooltip="dlib needs no download; insightface needs "
                               "models/insightface/models/<pack>/*.onnx"),
                io.Combo.Input("select", options=["all", "largest", "index"], default="all",
                               tooltip="per image: all faces, the largest N, or the faces at face_indices"),
                io.Int.Input("max_faces", default=0, min=0, max=256,
                             tooltip="per image, 0 = no limit"),
                io.String.Input("face_indices", default="0",
                                tooltip="with select=index: comma-separated indices in the chosen order"),
                io.Int.Input("min_face_size", default=32, min=0, max=8192,
                             tooltip="drop faces smaller than this many pixels"),
                io.Combo.Input("order", options=["left_to_right", "size", "track"], default="left_to_right",
                               tooltip="track: the batch is a video's frames; faces are tracked across them and "
                               "numbered by person (track id), so select=index keeps the same people in every frame; "
                               "a face missed for one or two frames is carried there from its last detection"),
            ],
            outputs=[
                Faces.Output("faces"),
                io.Image.Output("preview"),
                io.Int.Output("count"),
            ],
        )

    @classmethod
    def execute(cls, image: torch.Tensor, detector: str, select: str, max_faces: int,
                face_indices: str, min_face_size: int, order: str) -> io.NodeOutput:
        arrays = [to_rgb_float(img) for img in images_to_numpy(image)]
        det = _make_detector(detector)
        faces = [face for index, img in enumerate(with_progress(arrays)) for face in det.detect(img, index)]
        faceset = FaceSet(image_sizes=[img.shape[:2] for img in arrays], faces=faces)
        if order == "track":
            faceset = track_faces(faceset)
        faceset = select_faces(faceset, mode=select, count=max_faces,
                               indices=_parse_indices(face_indices) if select == "index" else (),
                               min_size=float(min_face_size), order=order)
        for index in range(len(arrays)):
            if not faceset.faces_of_image(index):
                log.warning("AuthFace: no face kept in image %d of the batch; it passes through unchanged", index)
        previews = [draw_faces(img, [faceset.faces[i] for i in faceset.faces_of_image(index)])
                    for index, img in enumerate(arrays)]
        return io.NodeOutput(faceset, numpy_to_images(previews), len(faceset.faces))
