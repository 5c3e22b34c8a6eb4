"""ArcFace recognition model of an insightface pack (``w600k_r50.onnx``, ``glintr100.onnx``)
run with onnxruntime.

Each face is warped to insightface's 112 x 112 five-point template the way insightface's own
``utils/face_align.norm_crop`` does (similarity fitted to the 5 points, bilinear
``cv2.warpAffine``, black border), then fed as RGB (pixel - 127.5) / 127.5
(``model_zoo/arcface_onnx.py``'s input_mean and input_std).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import MissingDependencyError, ModelFileError
from ..faces.align import estimate_similarity
from ..faces.detect_insightface import DOWNLOAD_URL, PACK_FILES
from ..faces.types import five_points_from_68
from .base import FaceEmbedder

# The recognition model of each pack.
PACK_RECOGNITION_FILE: dict[str, str] = {
    "buffalo_l": "w600k_r50.onnx",
    "antelopev2": "glintr100.onnx",
}
INPUT_SIZE = 112
# insightface python-package/insightface/utils/face_align.py ``arcface_dst``: the 5 points
# (image-left eye, image-right eye, nose tip, image-left and image-right mouth corner) of a
# 112 x 112 ArcFace input.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
_PIXEL_MEAN = 127.5
_PIXEL_STD = 127.5

_load_lock = threading.Lock()
_sessions: dict[tuple[str, tuple[str, ...]], Any] = {}


def recognition_file(root: str | Path, pack: str) -> Path:
    """``<root>/models/<pack>/<recognition model>``, checked to exist.

    Raises ValueError for an unknown pack, ModelFileError naming the file, its folder and where
    to get it when it is missing.
    """
    if pack not in PACK_RECOGNITION_FILE:
        raise ValueError(
            f"unknown insightface model pack {pack!r}; choose one of {', '.join(PACK_RECOGNITION_FILE)}"
        )
    folder = Path(root).expanduser().resolve() / "models" / pack
    path = folder / PACK_RECOGNITION_FILE[pack]
    if path.is_file():
        return path
    problem = (
        f"the folder {folder} does not exist" if not folder.is_dir() else f"{path.name} missing in {folder}"
    )
    nested = folder / pack / path.name
    if nested.is_file():
        problem += f" (it is in {nested.parent}: move the .onnx files up one folder)"
    raise ModelFileError(
        f"ArcFace identity needs {path.name} of the insightface pack {pack!r}: {problem}. "
        f"Download {DOWNLOAD_URL.format(pack=pack)} and unzip it so its .onnx files "
        f"({', '.join(PACK_FILES[pack])}) sit directly in {folder} "
        f"(in ComfyUI: models/insightface/models/{pack}/)."
    )


def arcface_input(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(3, 112, 112) float32 network input of the face with these (68, 2) landmarks in
    ``image`` (HxWx3 float RGB in [0, 1])."""
    matrix = estimate_similarity(five_points_from_68(landmarks), ARCFACE_TEMPLATE_112)
    warped = cv2.warpAffine(
        np.asarray(image, dtype=np.float32) * np.float32(255.0),
        matrix,
        (INPUT_SIZE, INPUT_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    return ((warped - _PIXEL_MEAN) / _PIXEL_STD).transpose(2, 0, 1).astype(np.float32)


class ArcFaceEmbedder(FaceEmbedder):
    """512-D ArcFace embeddings; distance = angle in degrees between embeddings.

    ``path``: the recognition .onnx file (see :func:`recognition_file`); ``providers``:
    onnxruntime execution providers (default: CPU). The session loads on first use and is
    shared between embedders of the same file.
    """

    dimension = 512
    distance_name = "angle_deg"
    threshold_metric = "similarity"
    # DeepFace's verification threshold for ArcFace with cosine distance, 0.68 (deepface
    # modules/verification.py find_threshold), i.e. cosine similarity above 0.32 (an angle
    # below 71.3 degrees) means the same person. Cross-check: insightface's maintainers give a
    # squared L2 distance of 1.24 between unit embeddings for their deploy/test.py model
    # (deepinsight/insightface issues 168 and 1106), similarity 1 - 1.24 / 2 = 0.38; both are
    # operating points of a ROC, not properties of the embedding.
    same_person_threshold = 0.32
    threshold_source = (
        "deepface modules/verification.py: ArcFace cosine distance < 0.68, i.e. similarity > 0.32"
    )

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"ArcFace model file {self.path} does not exist")
        self.name = f"arcface:{self.path.stem}"
        self.providers = tuple(providers or ("CPUExecutionProvider",))

    def _session(self) -> Any:
        key = (str(self.path.resolve()), self.providers)
        with _load_lock:
            if key not in _sessions:
                try:
                    import onnxruntime
                except ImportError as exc:
                    raise MissingDependencyError(
                        "onnxruntime", "ArcFace identity", pip_name="onnxruntime"
                    ) from exc
                try:
                    _sessions[key] = onnxruntime.InferenceSession(
                        str(self.path), providers=list(self.providers)
                    )
                except Exception as exc:
                    raise ModelFileError(
                        f"onnxruntime could not load {self.path}: {exc}. Replace it with a fresh "
                        "copy from its insightface pack"
                    ) from exc
            return _sessions[key]

    def _embed(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
        batch = np.stack([arcface_input(im, lm) for im, lm in zip(images, landmarks, strict=True)])
        session = self._session()
        model_input = session.get_inputs()[0]
        # Some exports fix the batch size at 1; run those one face at a time.
        if isinstance(model_input.shape[0], int) and model_input.shape[0] != len(batch):
            rows = [session.run(None, {model_input.name: batch[i : i + 1]})[0] for i in range(len(batch))]
            return np.concatenate(rows).astype(np.float32)
        return session.run(None, {model_input.name: batch})[0].astype(np.float32)

    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        from .base import cosine_similarity

        return np.degrees(np.arccos(cosine_similarity(a, b)))
