"""Fetch real photos of one person taken on different occasions, for the identity tests.

No installed package ships two different photos of one person (insightface has one photo each
of Tom Hanks and of six strangers, scikit-image one of Eileen Collins). The sdist of
``face_recognition==1.3.0`` on PyPI (MIT licence) carries its own test photos: three different
photos of Barack Obama (``obama.jpg``, ``obama2.jpg``, ``obama3.jpg``) and one of Joe Biden
(``biden.jpg``). ``make setup`` runs this once; the photos land in ``.cache/photos/`` (git-ignored):

    python tools/fetch_photos.py --dest .cache/photos
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REQUIREMENT = "face_recognition==1.3.0"
MEMBERS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
INNER_DIR = "face_recognition-1.3.0/tests/test_images"


def fetch(dest: Path) -> None:
    """Download the sdist (no dependencies, no build) and extract the photos into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                        "-d", tmp, REQUIREMENT], check=True)
        [archive] = Path(tmp).glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            for name in MEMBERS:
                data = tar.extractfile(f"{INNER_DIR}/{name}")
                if data is None:
                    raise RuntimeError(f"{REQUIREMENT} has no {INNER_DIR}/{name}")
                (dest / name).write_bytes(data.read())
    (dest / ".stamp").touch()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / ".cache" / "photos")
    fetch(parser.parse_args(argv).dest)


if __name__ == "__main__":
    main()
