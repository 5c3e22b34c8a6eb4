"""Run every benchmark module in bench/ (``python -m bench``, or ``make bench``) and print figures.

``python -m bench NAME...`` runs only the named ones (e.g. ``bench_paste``); each module has ``main()``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    names = argv or sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                           if m.name.startswith("bench_"))
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        module = importlib.import_module(f"bench.{name}")
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
