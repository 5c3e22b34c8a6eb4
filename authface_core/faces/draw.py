"""Preview of detections: boxes, 68 landmarks and face numbers drawn on a copy of the image."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..images import to_uint8_rgb
from .types import LEFT_EYE_68, MOUTH_68, RIGHT_EYE_68, DetectedFace

# RGB colours.
BOX_COLOUR = (255, 200, 0)
POINT_COLOUR = (255, 255, 255)
EYE_COLOUR = (0, 230, 255)
MOUTH_COLOUR = (255, 40, 120)
TEXT_COLOUR = (255, 255, 0)
OUTLINE_COLOUR = (0, 0, 0)

_EYES = frozenset(LEFT_EYE_68 + RIGHT_EYE_68)
_MOUTH = frozenset(MOUTH_68)


def draw_faces(image: np.ndarray, faces: Sequence[DetectedFace]) -> np.ndarray:
    """``image`` (any layout :func:`authface_core.images.to_rgb_float` accepts) with each face's
    box, its 68 landmarks (eyes cyan, mouth pink, the rest white; eye and mouth contours
    joined) and its position in ``faces`` as a number above the box ("N carried" for a tracked
    face the detector missed in this frame, carried from its last detection).

    Draws every face given, whatever its ``image_index``: pass the faces of this image. Line
    widths and text scale with the image size. Returns a new HxWx3 float32 RGB array in [0, 1].
    """
    canvas = to_uint8_rgb(image).copy()
    height, width = canvas.shape[:2]
    line = max(1, round(max(height, width) / 400))
    radius = max(1, line)
    font_scale = max(0.4, max(height, width) / 1000)

    for number, face in enumerate(faces):
        x0, y0, x1, y1 = (round(v) for v in face.box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), BOX_COLOUR, line, cv2.LINE_AA)
        points = np.rint(face.landmarks).astype(np.int32)
        for contour in (LEFT_EYE_68, RIGHT_EYE_68, MOUTH_68[:12], MOUTH_68[12:]):
            colour = MOUTH_COLOUR if contour[0] in _MOUTH else EYE_COLOUR
            cv2.polylines(
                canvas, [points[list(contour)]], True, colour, max(1, line // 2), cv2.LINE_AA
            )
        for index, (x, y) in enumerate(points):
            colour = (
                EYE_COLOUR if index in _EYES else MOUTH_COLOUR if index in _MOUTH else POINT_COLOUR
            )
            cv2.circle(canvas, (int(x), int(y)), radius, colour, -1, cv2.LINE_AA)
        label = f"{number} carried" if face.coasting else str(number)
        (_, text_h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, line)
        put_text(canvas, label, (x0, max(text_h + line, y0 - 2 * line)), font_scale, line)
    return canvas.astype(np.float32) * np.float32(1.0 / 255.0)


def put_text(
    canvas: np.ndarray,
    text: str,
    origin: tuple[int, int],
    font_scale: float,
    line: int,
    colour: tuple[int, int, int] = TEXT_COLOUR,
) -> None:
    """Write ``text`` on the uint8 RGB ``canvas`` in place, its baseline starting at ``origin``.
    A dark outline keeps it readable on any background."""
    for ink, width in ((OUTLINE_COLOUR, line + 2), (colour, line)):
        cv2.putText(
            canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, ink, width, cv2.LINE_AA
        )


def label_image(
    image: np.ndarray, lines: Sequence[str], colour: tuple[int, int, int] = TEXT_COLOUR
) -> np.ndarray:
    """``image`` with ``lines`` written top-left, one under the other, sized to the image (a 512
    crop gets text about 1/25 of its height). Returns a new HxWx3 float32 RGB array in [0, 1]."""
    canvas = to_uint8_rgb(image).copy()
    height, width = canvas.shape[:2]
    font_scale = max(0.3, min(height, width) / 700)
    line = max(1, round(min(height, width) / 300))
    y = 0
    for text in lines:
        (_, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, line)
        y += text_h + baseline + line
        put_text(canvas, text, (2 * line + 2, y), font_scale, line, colour)
    return canvas.astype(np.float32) * np.float32(1.0 / 255.0)
