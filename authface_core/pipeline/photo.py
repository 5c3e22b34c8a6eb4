"""Restoring every face of a whole photo: detect, align, restore as batches, paste back."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..colorfix import ColorFixMethod
from ..faces.align import align_faces
from ..faces.detect import FaceDetector, detect_faces
from ..faces.paste import paste_faces
from ..faces.types import FaceSet
from ..images import to_rgb_float
from ..prompts import RELEASE_CFG, RELEASE_STEPS
from .restore import AuthFacePipeline, InterruptCheck, ProgressCallback
from .sampling import Sampler

logger = logging.getLogger("authface")


def restore_photo(
    image: np.ndarray,
    pipeline: AuthFacePipeline,
    detector: FaceDetector | str = "dlib",
    size: int = 512,
    *,
    align_method: str = "ffhq",
    steps: int = RELEASE_STEPS,
    cfg: float = RELEASE_CFG,
    seed: int | torch.Generator = 0,
    sampler: Sampler = "ddpm",
    controlnet_scale: float = 1.0,
    color_fix: ColorFixMethod = "wavelet",
    batch_size: int = 4,
    feather: float = 1.0,
    paste_mask: str = "square",
    progress: ProgressCallback | None = None,
    interrupt: InterruptCheck | None = None,
) -> tuple[np.ndarray, FaceSet]:
    """Restore all faces of one photo with ``pipeline``.

    ``image``: any layout :func:`~authface_core.images.to_rgb_float` accepts (HxWx3 float RGB in
    [0, 1], uint8, grey, ...). Faces are found by ``detector`` (a name for
    :func:`~authface_core.faces.detect.get_detector` or a detector), aligned to ``size`` x
    ``size`` crops with ``align_method`` (size a multiple of the VAE's scale, 8), restored
    together by :meth:`AuthFacePipeline.restore` (sampling arguments passed on; the colour fix
    is against each LQ crop) and pasted back with ``feather`` / ``paste_mask`` (see
    :func:`~authface_core.faces.paste.paste_faces`).

    Returns the photo as HxWx3 float32 RGB in [0, 1] and the faces (with ``aligned`` filled).
    A photo with no face is returned unchanged (as float RGB) with an empty FaceSet, and logged.
    """
    rgb = to_rgb_float(image)
    faces = detect_faces([rgb], detector)
    if not faces.faces:
        logger.info("no face to restore: the photo is returned unchanged")
        return rgb, faces
    crops, faces = align_faces([rgb], faces, size, align_method)
    lq = torch.from_numpy(crops).permute(0, 3, 1, 2)
    restored = pipeline.restore(
        lq,
        steps=steps,
        cfg=cfg,
        seed=seed,
        sampler=sampler,
        controlnet_scale=controlnet_scale,
        color_fix=color_fix,
        batch_size=batch_size,
        progress=progress,
        interrupt=interrupt,
    )
    out_crops = restored.permute(0, 2, 3, 1).cpu().numpy()
    return paste_faces(rgb, out_crops, faces.aligned, feather=feather, mask=paste_mask), faces
