"""Make the README's pictures in docs/images/ from the code that does the work, so they stay current.

    .venv/bin/python tools/make_readme_images.py            # face pipeline + icon
    .venv/bin/python tools/make_readme_images.py --screenshots test-artifacts

- ``face_pipeline.jpg``: scikit-image's astronaut photo (NASA, public domain) through the faces
  core: detections with 68 landmarks (``faces.draw``), the FFHQ-aligned crop, its eye and mouth
  masks (``faces.masks``), and the paste-back seam (a grey copy of the crop pasted back with the
  ``face`` mask, so the feathered blend is visible).
- ``icon.png``: the aligned crop with its eye/mouth contours, 200x200: the registry icon
  (``[tool.comfy] Icon`` in pyproject.toml).
- ``restore_workflow.jpg`` (with ``--screenshots``): the restore workflow in the ComfyUI page, the
  screenshot ``tests/test_browser.py`` keeps as ``test-artifacts/latest-authface_restore_photo.png``.

``tests/test_readme_images.py`` regenerates the first two and compares them with the committed files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from authface_core.faces.align import align_faces, apply_affine
from authface_core.faces.detect import detect_faces
from authface_core.faces.draw import EYE_COLOUR, MOUTH_COLOUR, draw_faces
from authface_core.faces.masks import region_mask
from authface_core.faces.paste import paste_faces
from authface_core.faces.select import select_faces
from authface_core.faces.types import AlignedFace
from authface_core.images import to_rgb_float, to_uint8_rgb

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
PANEL = 320  # height of each picture of the pipeline strip
GUTTER = 4  # white space between the pictures
CAPTION_HEIGHT = 36
CAPTION_SCALE = 0.6
CAPTION_BACKGROUND = (245, 245, 245)
CAPTION_INK = (30, 30, 30)
ICON = 200
SCREENSHOT_WIDTH = 2000  # tests/test_browser.py's window: node text stays legible at full size
JPEG_QUALITY = 85
MASK_TINT = {"eyes": np.array(EYE_COLOUR) / 255, "mouth": np.array(MOUTH_COLOUR) / 255}  # the preview's colours


def _panel(image: np.ndarray, caption: str) -> np.ndarray:
    """``image`` scaled to a ``PANEL``-high square-ish panel with ``caption`` on a bar under it (text
    over the photo is unreadable at README sizes)."""
    height, width = image.shape[:2]
    canvas = to_uint8_rgb(cv2.resize(image, (round(width * PANEL / height), PANEL), interpolation=cv2.INTER_AREA))
    bar = np.full((CAPTION_HEIGHT, canvas.shape[1], 3), CAPTION_BACKGROUND, np.uint8)
    (text_width, text_height), _ = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, CAPTION_SCALE, 1)
    origin = ((bar.shape[1] - text_width) // 2, (CAPTION_HEIGHT + text_height) // 2)
    cv2.putText(bar, caption, origin, cv2.FONT_HERSHEY_SIMPLEX, CAPTION_SCALE, CAPTION_INK, 1, cv2.LINE_AA)
    return np.concatenate([canvas, bar]).astype(np.float32) / 255


def pipeline_images() -> dict[str, np.ndarray]:
    """The README pictures of the faces core, as float32 RGB images in [0, 1], by file name."""
    photo = to_rgb_float(data.astronaut())
    # dlib also takes the mission badge on her suit for a face; the largest is hers.
    faces = select_faces(detect_faces([photo]), mode="largest", count=1)
    if not faces.faces:
        raise RuntimeError("no face found in scikit-image's astronaut: the detector changed")
    crops, faces = align_faces([photo], faces, size=512, method="ffhq")
    crop, aligned = crops[0], faces.aligned[0]

    masked = crop.copy()
    for region, tint in MASK_TINT.items():
        weight = region_mask(aligned, 512, regions=(region,), feather=2.0)[..., None]
        masked = masked * (1 - 0.6 * weight) + tint * (0.6 * weight)
    masked = masked.astype(np.float32)
    grey = np.repeat(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    pasted = paste_faces(photo, grey[None], [aligned], mask="face")
    panels = [
        _panel(_around_box(draw_faces(photo, faces.faces), faces.faces[0].box, margin=2.2), "1 detect: 68 landmarks"),
        _panel(crop, "2 align (FFHQ)"),
        _panel(masked, "3 eye / mouth masks"),
        _panel(_around_box(pasted, _footprint(aligned)), "4 paste back: the seam"),
    ]
    gutter = np.ones((panels[0].shape[0], GUTTER, 3), np.float32)
    strip = np.concatenate([part for panel in panels for part in (panel, gutter)][:-1], axis=1)
    icon = cv2.resize(masked, (ICON, ICON), interpolation=cv2.INTER_AREA)
    return {"face_pipeline.jpg": strip, "icon.png": icon}


def _footprint(aligned: AlignedFace) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) in the photo around the aligned crop's four corners."""
    corners = np.array([[0, 0], [aligned.size, 0], [aligned.size, aligned.size], [0, aligned.size]], np.float64)
    source = apply_affine(aligned.inverse_matrix, corners)
    (x0, y0), (x1, y1) = source.min(axis=0), source.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _around_box(image: np.ndarray, box: tuple[float, float, float, float], margin: float = 1.15) -> np.ndarray:
    """The square part of ``image`` around ``box`` (sides ``margin`` times its longer side),
    shifted to stay inside the image."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * margin
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    height, width = image.shape[:2]
    left = int(np.clip(cx - side / 2, 0, max(0, width - side)))
    top = int(np.clip(cy - side / 2, 0, max(0, height - side)))
    side = int(min(side, width - left, height - top))
    return image[top:top + side, left:left + side]


def screenshot_image(screenshot: Path) -> np.ndarray:
    """A browser screenshot at the README's width (scaled down when wider), float32 RGB in [0, 1]."""
    bgr = cv2.imread(str(screenshot))
    if bgr is None:
        raise FileNotFoundError(f"{screenshot} is missing: run tests/test_browser.py first")
    height, width = bgr.shape[:2]
    if width > SCREENSHOT_WIDTH:
        bgr = cv2.resize(bgr, (SCREENSHOT_WIDTH, round(height * SCREENSHOT_WIDTH / width)), interpolation=cv2.INTER_AREA)
    return to_rgb_float(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def encode(name: str, image: np.ndarray) -> bytes:
    """The file bytes of ``image`` for ``name`` (JPEG quality 85 for photos, 8-bit PNG otherwise)."""
    bgr = cv2.cvtColor(to_uint8_rgb(image), cv2.COLOR_RGB2BGR)
    if name.endswith(".jpg"):
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    else:
        ok, data = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError(f"cannot encode {name}")
    return data.tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=IMAGES)
    parser.add_argument("--screenshots", type=Path, help="test-artifacts/ of a tests/test_browser.py run")
    args = parser.parse_args()
    images = pipeline_images()
    if args.screenshots:
        images["restore_workflow.jpg"] = screenshot_image(args.screenshots / "latest-authface_restore_photo.png")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        (args.out / name).write_bytes(encode(name, image))
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
