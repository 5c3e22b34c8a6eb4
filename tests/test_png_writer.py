"""The one PNG writer (authface_core.images.write_png) used by AuthFace Save Image (16-bit PNG) and
`authface restore`: values outside [0, 1] are clipped, not wrapped around, and read back exactly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from authface_core.archive.photos import encode_output
from authface_core.images import write_png

# Overshoots a sampler or colour fix produces, the two ends, and a mid value.
VALUES = np.array([-0.001, 1.002, -3.0, 7.5, 0.0, 1.0, 0.5, np.nan], dtype=np.float32)
# What they must become at each depth: clipped to [0, 1], rounded; NaN as 0.
EXPECTED = {16: [0, 65535, 0, 65535, 0, 65535, 32768, 0], 8: [0, 255, 0, 255, 0, 255, 128, 0]}


def _read(path: Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert data is not None, f"cannot read {path}"
    return data


@pytest.mark.parametrize("bits", [16, 8])
def test_values_outside_0_1_are_clipped_in_every_channel(tmp_path: Path, bits: int) -> None:
    rgba = np.stack([VALUES, VALUES[::-1], np.full_like(VALUES, 0.25), VALUES], axis=1)[None]  # 1 x 8 x 4
    path = tmp_path / "ünïcode folder" / f"out{bits}.png"
    path.parent.mkdir()
    write_png(path, rgba, bits=bits)
    back = _read(path)
    assert back.dtype == (np.uint16 if bits == 16 else np.uint8) and back.shape == (1, 8, 4)
    expected = np.array(EXPECTED[bits])
    # OpenCV gives BGRA: R is channel 2, G 1, B 0.
    assert back[0, :, 2].tolist() == expected.tolist()
    assert back[0, :, 1].tolist() == expected[::-1].tolist()
    assert back[0, :, 0].tolist() == [round(0.25 * (2**bits - 1))] * 8
    assert back[0, :, 3].tolist() == expected.tolist()


def test_rgb_and_grey_layouts(tmp_path: Path) -> None:
    write_png(tmp_path / "rgb.png", np.stack([VALUES] * 3, axis=1)[None], bits=16)
    assert _read(tmp_path / "rgb.png").shape == (1, 8, 3)
    write_png(tmp_path / "grey.png", VALUES[None], bits=16)
    assert _read(tmp_path / "grey.png")[0].tolist() == EXPECTED[16]


def test_the_command_line_writes_through_the_same_writer(tmp_path: Path) -> None:
    rgb = np.stack([VALUES, VALUES, VALUES], axis=1)[None]
    alpha = VALUES[None]
    (tmp_path / "cli.png").write_bytes(encode_output(rgb, alpha, np.dtype(np.uint16)))
    back = _read(tmp_path / "cli.png")
    assert back.shape == (1, 8, 4) and back[0, :, 0].tolist() == EXPECTED[16] == back[0, :, 3].tolist()


def test_bad_depth_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="8 or 16 bits"):
        write_png(tmp_path / "x.png", np.zeros((2, 2, 3), np.float32), bits=12)
