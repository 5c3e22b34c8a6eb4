"""Paste-back of 6 faces into a 3840x2658 photo: ours against facexlib's (CPU).

insightface's t1.jpg scaled x3 (3840x2658); dlib landmarks found on the original 1280x886
photo and scaled x3. Both sides get the same photo and the same 5 points per face:

- ours: ``align_faces(..., size=512, method="five_point")`` then ``paste_faces`` of the
  unchanged crops (float32 RGB);
- facexlib 0.3: ``FaceRestoreHelper(upscale_factor=1, face_size=512, use_parse=False)`` with
  ``all_landmarks_5`` set to the same points, its own ``align_warp_face`` /
  ``get_inverse_affine``, its unchanged crops as restored faces, then
  ``paste_faces_to_input_image`` (uint8 BGR, as GFPGAN/CodeFormer use it).

Prints the median time of a paste call (after a warm-up) for both, the speed ratio, and the
round-trip PSNR (whole image and faces) of both. Run: ``python -m bench.bench_paste``.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

import cv2
import numpy as np

from authface_core.faces.align import align_faces
from authface_core.faces.detect import detect_faces
from authface_core.faces.paste import paste_faces
from authface_core.faces.types import DetectedFace, FaceSet, five_points_from_68

from .timing import median_seconds

SCALE = 3
SIZE = 512
REPEATS_OURS = 7
REPEATS_FACEXLIB = 3


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    err = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    return float(10 * np.log10(1.0 / (err[where] if where is not None else err).mean()))


def _photo_and_faces() -> tuple[np.ndarray, FaceSet]:
    """t1.jpg x3 as uint8 BGR, and its faces (dlib on the 1280 px original, scaled x3)."""
    root = importlib.util.find_spec("insightface").submodule_search_locations[0]
    small = cv2.imread(os.path.join(root, "data", "images", "t1.jpg"))
    big = cv2.resize(small, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC)
    found = detect_faces([cv2.cvtColor(small, cv2.COLOR_BGR2RGB)])
    faces = []
    for face in found.faces:
        # Pixel corners scale: a pixel-centre coordinate x becomes (x + 0.5) * s - 0.5.
        lm = (face.landmarks + 0.5) * SCALE - 0.5
        box = tuple((np.array(face.box) + 0.5) * SCALE - 0.5)
        faces.append(DetectedFace(0, box, face.score, lm, five_points_from_68(lm), face.detector))
    return big, FaceSet(image_sizes=[big.shape[:2]], faces=faces)


def _facexlib_helper(model_dir: str) -> object:
    """facexlib's FaceRestoreHelper built by its own constructor, without network access.

    The constructor loads a RetinaFace detector and a ParseNet parser from ``model_rootpath``
    (downloading them when absent, impossible here). The paste path uses neither (landmarks are
    given, use_parse=False), so randomly initialised weights of the right shapes are saved there.
    """
    import torch
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.parsenet import ParseNet
    from facexlib.utils.face_restoration_helper import FaceRestoreHelper

    cpu = torch.device("cpu")
    torch.save(RetinaFace(network_name="mobile0.25", device=cpu).state_dict(),
               os.path.join(model_dir, "detection_mobilenet0.25_Final.pth"))
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(),
               os.path.join(model_dir, "parsing_parsenet.pth"))
    return FaceRestoreHelper(upscale_factor=1, face_size=SIZE, det_model="retinaface_mobile0.25",
                             use_parse=False, device=cpu, model_rootpath=model_dir)


def main() -> None:
    big_bgr, faces = _photo_and_faces()
    height, width = big_bgr.shape[:2]
    photo = cv2.cvtColor(big_bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    face_area = np.zeros((height, width), dtype=bool)
    for face in faces.faces:
        (x0, y0), (x1, y1) = np.floor(face.landmarks.min(0)).astype(int), np.ceil(face.landmarks.max(0)).astype(int)
        face_area[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    print(f"photo {width}x{height}, {len(faces.faces)} faces, crops {SIZE}x{SIZE}, "
          f"face regions {face_area.mean() * 100:.1f}% of the photo")

    crops, aligned = align_faces([photo], faces, size=SIZE, method="five_point")
    ours_s = median_seconds(lambda: paste_faces(photo, crops, aligned.aligned), REPEATS_OURS)
    ours = paste_faces(photo, crops, aligned.aligned)
    ours_u8 = np.round(ours * 255.0) / 255.0
    ffhq_crops, ffhq = align_faces([photo], faces, size=SIZE, method="ffhq")
    ffhq_s = median_seconds(lambda: paste_faces(photo, ffhq_crops, ffhq.aligned), REPEATS_OURS)
    ours_face_s = median_seconds(lambda: paste_faces(photo, crops, aligned.aligned, mask="face"), REPEATS_OURS)

    with tempfile.TemporaryDirectory() as model_dir:
        helper = _facexlib_helper(model_dir)
        helper.read_image(big_bgr)
        helper.all_landmarks_5 = [face.points5.copy() for face in faces.faces]
        helper.align_warp_face()
        helper.get_inverse_affine()
        for crop in helper.cropped_faces:
            helper.add_restored_face(crop)
        theirs_s = median_seconds(helper.paste_faces_to_input_image, REPEATS_FACEXLIB)
        theirs_bgr = helper.paste_faces_to_input_image()
    theirs = cv2.cvtColor(theirs_bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0

    print(f"paste time (median): ours {ours_s * 1000:.0f} ms (five_point), {ffhq_s * 1000:.0f} ms (ffhq), "
          f"{ours_face_s * 1000:.0f} ms (five_point, mask='face'); facexlib {theirs_s * 1000:.0f} ms")
    print(f"speed ratio facexlib / ours: {theirs_s / ours_s:.1f}x")
    print(f"round-trip PSNR whole / faces: ours {_psnr(ours, photo):.2f} / {_psnr(ours, photo, face_area):.2f} dB "
          f"(float32), {_psnr(ours_u8, photo):.2f} / {_psnr(ours_u8, photo, face_area):.2f} dB (rounded to uint8); "
          f"facexlib {_psnr(theirs, photo):.2f} / {_psnr(theirs, photo, face_area):.2f} dB (uint8)")


if __name__ == "__main__":
    main()
