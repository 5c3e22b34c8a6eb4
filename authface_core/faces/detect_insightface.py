"""insightface detection (SCRFD boxes + 5 points, 1k3d68 landmarks) as DetectedFace.

Model packs sit in ``<root>/models/<pack>/*.onnx`` (insightface's layout; in ComfyUI, ``root``
is ``models/insightface``). Nothing is downloaded: missing files raise ModelFileError saying
where to put what.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, ModelFileError
from ..images import to_uint8_rgb
from .types import DetectedFace

# The .onnx files of each pack (the zips of insightface's model zoo), and the detector file
# this adapter needs from it besides LANDMARK_FILE.
PACK_FILES: dict[str, tuple[str, ...]] = {
    "buffalo_l": (
        "1k3d68.onnx",
        "2d106det.onnx",
        "det_10g.onnx",
        "genderage.onnx",
        "w600k_r50.onnx",
    ),
    "antelopev2": (
        "1k3d68.onnx",
        "2d106det.onnx",
        "genderage.onnx",
        "glintr100.onnx",
        "scrfd_10g_bnkps.onnx",
    ),
}
PACK_DETECTOR_FILE: dict[str, str] = {
    "buffalo_l": "det_10g.onnx",
    "antelopev2": "scrfd_10g_bnkps.onnx",
}
LANDMARK_FILE = "1k3d68.onnx"
# Release insightface itself downloads packs from (insightface/utils/storage.py).
DOWNLOAD_URL = "https://github.com/deepinsight/insightface/releases/download/model-zoo/{pack}.zip"

# insightface task names of the two models used (model_zoo routing / landmark.py).
_TASKS = ["detection", "landmark_3d_68"]

_load_lock = threading.Lock()
_apps: dict[tuple[str, int, float, tuple[str, ...] | None], tuple[Any, threading.Lock]] = {}


def pack_folder(root: str | Path, pack: str) -> Path:
    """``<root>/models/<pack>``, checked to hold the files this adapter needs.

    Raises ValueError for an unknown pack and ModelFileError, naming the folder, the pack's
    files and where to get them, when the folder or a needed file is missing.
    """
    if pack not in PACK_FILES:
        raise ValueError(
            f"unknown insightface model pack {pack!r}; choose one of {', '.join(PACK_FILES)}"
        )
    folder = Path(root).expanduser().resolve() / "models" / pack
    needed = (PACK_DETECTOR_FILE[pack], LANDMARK_FILE)
    missing = [name for name in needed if not (folder / name).is_file()]
    if not missing:
        return folder
    if not folder.is_dir():
        problem = f"the folder {folder} does not exist"
    else:
        problem = f"{', '.join(missing)} missing in {folder}"
        nested = folder / pack
        if all((nested / name).is_file() for name in needed):
            problem += f" (they are in {nested}: move the .onnx files up one folder)"
    raise ModelFileError(
        f"insightface model pack {pack!r} not usable: {problem}. That folder must hold the "
        f"pack's files {', '.join(PACK_FILES[pack])} (face detection needs {needed[0]} and "
        f"{needed[1]}). Download {DOWNLOAD_URL.format(pack=pack)} and unzip it so the .onnx files "
        f"sit directly in {folder} (in ComfyUI: models/insightface/models/{pack}/)."
    )


def face_from_insightface(raw: Mapping[str, Any], image_index: int) -> DetectedFace:
    """One insightface result (an ``insightface.app.common.Face`` or any mapping with its keys)
    as a DetectedFace.

    Uses ``bbox`` (4,) x0, y0, x1, y1 -> ``box``; ``det_score`` -> ``score``; ``kps`` (5, 2) ->
    ``points5`` (SCRFD's order is image-left eye, image-right eye, nose, image-left and
    image-right mouth corner: the order of insightface's arcface_dst template in
    utils/face_align.py, and of ``five_points_from_68``); ``landmark_3d_68`` (68, 3), x and y
    in image pixels, iBUG order -> ``landmarks`` (68, 2). Raises ValueError when a key is
    missing or has the wrong shape.
    """
    values = {}
    for key, shape in (("bbox", (4,)), ("kps", (5, 2)), ("landmark_3d_68", (68, 3))):
        value = raw.get(key)
        if value is None:
            hint = f" (the pack needs {LANDMARK_FILE})" if key == "landmark_3d_68" else ""
            raise ValueError(f"insightface result has no {key!r}{hint}")
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != shape:
            raise ValueError(f"insightface {key!r} must have shape {shape}, got {arr.shape}")
        values[key] = arr
    score = raw.get("det_score")
    if score is None:
        raise ValueError("insightface result has no 'det_score'")
    x0, y0, x1, y1 = (float(v) for v in values["bbox"])
    return DetectedFace(
        image_index=image_index,
        box=(x0, y0, x1, y1),
        score=float(score),
        landmarks=np.ascontiguousarray(values["landmark_3d_68"][:, :2]),
        points5=values["kps"],
        detector="insightface",
    )


class InsightFaceDetector:
    """insightface detector + 68 landmarks (see :class:`~authface_core.faces.detect.FaceDetector`).

    Options: ``root`` (required): the folder holding ``models/<pack>/``; ``pack``: "buffalo_l"
    (default) or "antelopev2"; ``det_size`` (default 640): the square side SCRFD resizes
    images to; ``det_thresh`` (default 0.5): minimum detection probability; ``providers``:
    onnxruntime execution providers (default: insightface's choice).

    The folder is checked on construction (ModelFileError, see :func:`pack_folder`); the models
    load on first ``detect`` and are shared between detectors with the same settings. Raises
    MissingDependencyError when insightface or onnxruntime is not installed.
    """

    name = "insightface"

    def __init__(
        self,
        root: str | Path | None = None,
        pack: str = "buffalo_l",
        det_size: int = 640,
        det_thresh: float = 0.5,
        providers: list[str] | None = None,
    ) -> None:
        if root is None:
            raise ValueError(
                "the insightface detector needs root=, the folder holding models/<pack>/ "
                "(in ComfyUI: ComfyUI/models/insightface)"
            )
        if int(det_size) != det_size or det_size < 32 or det_size % 32:
            raise ValueError(
                f"det_size must be a positive multiple of 32 (e.g. 640), got {det_size!r}"
            )
        if not 0.0 < det_thresh < 1.0:
            raise ValueError(f"det_thresh must lie in (0, 1), got {det_thresh!r}")
        self.folder = pack_folder(root, pack)
        self.pack = pack
        self.det_size = int(det_size)
        self.det_thresh = float(det_thresh)
        self.providers = None if providers is None else tuple(providers)

    def detect(self, image: np.ndarray, image_index: int = 0) -> list[DetectedFace]:
        """Faces in ``image`` (HxWx3 RGB, float32 in [0, 1] or uint8), insightface's order."""
        # insightface takes OpenCV-style BGR uint8 (its blobs use swapRB=True).
        bgr = np.ascontiguousarray(to_uint8_rgb(image)[:, :, ::-1])
        app, lock = self._app()
        with lock:
            raws = app.get(bgr)
        return [face_from_insightface(raw, image_index) for raw in raws]

    def _app(self) -> tuple[Any, threading.Lock]:
        key = (str(self.folder), self.det_size, self.det_thresh, self.providers)
        with _load_lock:
            if key not in _apps:
                _apps[key] = (self._load(), threading.Lock())
            return _apps[key]

    def _load(self) -> Any:
        try:
            from insightface.app import FaceAnalysis
        except ImportError as exc:
            raise MissingDependencyError(
                "insightface", "Face detection with insightface", pip_name="insightface onnxruntime"
            ) from exc
        options: dict[str, Any] = {}
        if self.providers is not None:
            options["providers"] = list(self.providers)
        try:
            # The folder (absolute, existing) as name: insightface 2.x loads a folder name as is;
            # 0.7.x joins name to root/models, which an absolute name overrides. Neither downloads.
            app = FaceAnalysis(
                name=str(self.folder),
                root=str(self.folder.parent.parent),
                allowed_modules=_TASKS,
                **options,
            )
            app.prepare(
                ctx_id=0, det_thresh=self.det_thresh, det_size=(self.det_size, self.det_size)
            )
        except Exception as exc:
            raise ModelFileError(
                f"insightface could not load the model pack in {self.folder}: {exc}. Replace "
                f"its .onnx files with a fresh copy of {DOWNLOAD_URL.format(pack=self.pack)}"
            ) from exc
        if "landmark_3d_68" not in app.models:
            raise ModelFileError(
                f"{self.folder / LANDMARK_FILE} was not recognised as insightface's 68-point "
                f"landmark model; replace it with the one from "
                f"{DOWNLOAD_URL.format(pack=self.pack)}"
            )
        return app
