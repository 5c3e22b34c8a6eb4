"""Normalising the images the library accepts to one layout, and writing images as PNG.

Accepted: numpy arrays (or anything ``np.asarray`` turns into one) of shape HxW (grey), HxWx1,
HxWx3 (RGB) or HxWx4 (RGBA), dtype uint8, uint16 (e.g. 16-bit PNG) or float16/32/64 with values
in [0, 1]. Channel order is RGB (convert OpenCV's BGR before calling).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import AuthFaceError

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)
# Float data whose maximum exceeds this is taken to be 0-255 (or 0-65535) data, not [0, 1].
_FLOAT_RANGE_LIMIT = 2.0


def _as_hwc(image: np.ndarray) -> np.ndarray:
    """The array as HxWxC, C in (1, 3, 4); ValueError naming the shape otherwise."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"expected one image of shape HxW, HxWx1, HxWx3 or HxWx4, got shape {arr.shape}; "
            "for a batch, pass the images one at a time (or a list of them)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image has no pixels: shape {arr.shape}")
    return arr


def _scaled_float(arr: np.ndarray) -> np.ndarray:
    """Values of any accepted dtype as float32 in [0, 1] (same shape)."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) * np.float32(1.0 / 255.0)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) * np.float32(1.0 / 65535.0)
    if arr.dtype in _FLOAT_DTYPES:
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ValueError("image contains NaN or infinite values")
        peak = float(out.max())
        if peak > _FLOAT_RANGE_LIMIT:
            raise ValueError(
                f"float images must hold values in [0, 1], got a maximum of {peak:g}; "
                "divide 0-255 data by 255 (or pass it as uint8)"
            )
        # Resampling upstream overshoots [0, 1] slightly; clipping is the intended reading.
        return np.clip(out, 0.0, 1.0, out=out)
    raise ValueError(
        f"unsupported image dtype {arr.dtype}; expected uint8, uint16 or float16/32/64 in [0, 1]"
    )


def _to_rgb(arr: np.ndarray) -> np.ndarray:
    """HxWxC (C in 1, 3, 4) to HxWx3: grey is repeated, alpha is dropped."""
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    return arr[:, :, :3]


def to_rgb_float(image: np.ndarray) -> np.ndarray:
    """The image as HxWx3 float32 RGB in [0, 1], C-contiguous (a new array).

    Grey images are repeated to three channels; the alpha channel of RGBA images is dropped
    (use :func:`split_alpha` to keep it). uint8 is divided by 255, uint16 by 65535; float input
    must lie in [0, 1] and is clipped to it. Raises ValueError for other shapes or dtypes, for
    non-finite values and for float data that is clearly 0-255.
    """
    arr = _as_hwc(image)
    return np.ascontiguousarray(_scaled_float(_to_rgb(arr)))


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rgb, alpha)``: rgb as from :func:`to_rgb_float`; alpha HxW float32 in [0, 1], or None
    when the image has no alpha channel (fewer than four channels)."""
    arr = _as_hwc(image)
    if arr.shape[2] != 4:
        return to_rgb_float(arr), None
    scaled = _scaled_float(arr)
    return np.ascontiguousarray(scaled[:, :, :3]), np.ascontiguousarray(scaled[:, :, 3])


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """The image as HxWx3 uint8 RGB, C-contiguous, rounding to the nearest level (what dlib and
    OpenCV-based detectors take). Accepts everything :func:`to_rgb_float` accepts. uint8 input is
    not rescaled; when it is already HxWx3 and C-contiguous it is returned as is (not copied)."""
    arr = _as_hwc(image)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(_to_rgb(arr))
    scaled = _scaled_float(_to_rgb(arr))  # a new array: safe to work in place (8K = 400 MB)
    scaled *= np.float32(255.0)
    return np.rint(scaled, out=scaled).astype(np.uint8, order="C")


def png_levels(image: np.ndarray, bits: int = 16) -> np.ndarray:
    """Float RGB(A) (HxW, HxWx1, HxWx3 or HxWx4) -> the BGR(A)/grey integer array OpenCV writes as
    a PNG of ``bits`` (8 or 16) per channel.

    Values are clipped to [0, 1] before rounding to the nearest level: samplers, colour fixes and
    resampling overshoot slightly, and an unclipped -0.001 or 1.002 would wrap around in the
    unsigned type (65470 and 130 at 16 bits). NaN is written as 0. Raises ValueError for other
    shapes or depths."""
    if bits not in (8, 16):
        raise ValueError(f"PNG depth must be 8 or 16 bits, got {bits}")
    arr = _as_hwc(image)
    levels = np.float32(255.0 if bits == 8 else 65535.0)
    scaled = np.clip(np.nan_to_num(arr.astype(np.float32), nan=0.0), 0.0, 1.0) * levels
    pixels = np.rint(scaled).astype(np.uint8 if bits == 8 else np.uint16)
    if pixels.shape[2] == 1:
        return pixels[:, :, 0]
    # OpenCV orders colour channels BGR; alpha stays last.
    order = [2, 1, 0, 3][: pixels.shape[2]]
    return np.ascontiguousarray(pixels[:, :, order])


def encode_png(image: np.ndarray, bits: int = 16) -> bytes:
    """The PNG file bytes of float RGB(A) in [0, 1] (see :func:`png_levels`: clipped, rounded) at
    8 or 16 bits per channel. Raises OSError when OpenCV cannot encode the image."""
    import cv2

    ok, encoded = cv2.imencode(".png", png_levels(image, bits))
    if not ok:
        raise OSError("OpenCV could not encode the image as PNG")
    return encoded.tobytes()


def write_png(path: str | Path, image: np.ndarray, bits: int = 16) -> None:
    """Write float RGB(A) in [0, 1] as :func:`encode_png` encodes it at ``path``, through bytes so
    that any path (non-ASCII included) works. Raises OSError when OpenCV cannot encode the image or
    the file cannot be written."""
    Path(path).write_bytes(encode_png(image, bits))


class ImageFileError(AuthFaceError):
    """An image file cannot be read or decoded."""


def rgb_channel_order(image: np.ndarray) -> np.ndarray:
    """An image as OpenCV decodes it (BGR or BGRA) in RGB(A) channel order; grey is left as it is."""
    import cv2

    if image.ndim == 3 and image.shape[2] in (3, 4):
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return image


def read_image_file(path: Path) -> np.ndarray:
    """The image as OpenCV decodes it (BGR/BGRA/grey, uint8 or uint16), read from bytes so that
    any path (non-ASCII included) works. Raises ImageFileError naming the file when it cannot be
    read or decoded, or holds a pixel type other than 8/16-bit integers or floats."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise ImageFileError(f"cannot read {path}: {err}") from err
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageFileError(f"{path} is not an image OpenCV can decode (empty, truncated or unsupported format)")
    if image.dtype not in (np.uint8, np.uint16) and not np.issubdtype(image.dtype, np.floating):
        raise ImageFileError(f"{path} has pixel type {image.dtype}; use 8- or 16-bit images")
    return image
