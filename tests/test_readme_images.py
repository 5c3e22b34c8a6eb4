"""The README's pictures are current: tools/make_readme_images.py makes the same face-pipeline
pictures as the committed ones, every picture is small, and the README shows them."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from comfy_host import REPO

sys.path.insert(0, str(REPO / "tools"))
import make_readme_images  # noqa: E402

IMAGES = REPO / "docs" / "images"
MAX_BYTES = 300_000
README_IMAGES = ("face_pipeline.jpg", "restore_workflow.jpg")


@pytest.fixture(scope="module")
def generated() -> dict[str, np.ndarray]:
    return make_readme_images.pipeline_images()


def decoded(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).astype(np.float64)


@pytest.mark.parametrize("name", ["face_pipeline.jpg", "icon.png"])
def test_committed_picture_is_what_the_tool_makes(generated: dict[str, np.ndarray], name: str) -> None:
    committed = (IMAGES / name).read_bytes()
    made = make_readme_images.encode(name, generated[name])
    # JPEG encoders may differ by a level between builds; anything more means the picture is stale.
    difference = np.abs(decoded(made) - decoded(committed))
    assert difference.shape[:2] == decoded(committed).shape[:2]
    assert difference.mean() < 0.5 and difference.max() <= 8, (
        f"docs/images/{name} is stale: run tools/make_readme_images.py")


def test_pictures_are_small_and_shown() -> None:
    readme = (REPO / "README.md").read_text()
    for name in README_IMAGES:
        assert (IMAGES / name).stat().st_size < MAX_BYTES, name
        assert f"docs/images/{name}" in readme, f"the README does not show {name}"
    height, width = decoded((IMAGES / "restore_workflow.jpg").read_bytes()).shape[:2]
    assert width == make_readme_images.SCREENSHOT_WIDTH and 0.4 < height / width < 1.0


def test_screenshot_is_scaled_for_the_readme(tmp_path) -> None:
    """The --screenshots path: a browser-sized screenshot is kept, a wider one scaled down."""
    shot = tmp_path / "latest-authface_restore_photo.png"
    width = make_readme_images.SCREENSHOT_WIDTH
    cv2.imwrite(str(shot), np.full((1100, width, 3), 90, np.uint8))
    assert make_readme_images.screenshot_image(shot).shape == (1100, width, 3)
    cv2.imwrite(str(shot), np.full((1100, 2 * width, 3), 90, np.uint8))
    scaled = make_readme_images.screenshot_image(shot)
    assert scaled.shape == (550, width, 3)
    assert len(make_readme_images.encode("restore_workflow.jpg", scaled)) < MAX_BYTES
