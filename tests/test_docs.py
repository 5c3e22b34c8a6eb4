"""The repository stands alone: nothing cites design notes kept outside it, and the documentation
it cites instead exists (docs/, links between its pages)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from comfy_host import REPO

SKIPPED_DIRS = {".git", ".venv", ".cache", "__pycache__", "test-artifacts", ".pytest_cache"}
# Built from parts so that this file does not cite them itself.
OUTSIDE_REFERENCES = ("DESIGN" + ".md", "../" + "shared", "/work/" + "shared")
DOC_CITATION = re.compile(r"docs/([A-Za-z0-9_.-]+\.md)")
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def repository_texts() -> dict[Path, str]:
    """Every text file of the work tree outside virtualenvs, caches and git's own folder."""
    texts = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        for name in files:
            path = Path(root) / name
            if path.stat().st_size > 2_000_000:
                continue
            try:
                texts[path] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # binary (images, weights)
    return texts


def test_nothing_cites_notes_outside_the_repository() -> None:
    texts = repository_texts()
    assert REPO / "README.md" in texts and len(texts) > 100
    offenders = [f"{path.relative_to(REPO)}:{number} {line.strip()}"
                 for path, text in texts.items()
                 for number, line in enumerate(text.splitlines(), 1)
                 if any(ref in line for ref in OUTSIDE_REFERENCES)]
    assert not offenders, "cite docs/ instead:\n" + "\n".join(offenders)


def test_cited_docs_pages_exist() -> None:
    cited = {(path, page) for path, text in repository_texts().items() for page in DOC_CITATION.findall(text)}
    assert len(cited) > 20, "the code cites docs/ pages for its numbers"
    missing = sorted(f"{path.relative_to(REPO)} cites docs/{page}" for path, page in cited
                     if not (REPO / "docs" / page).is_file())
    assert not missing, missing


def test_relative_links_in_markdown_resolve() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = [f"{page.relative_to(REPO)} -> {target}" for page in pages
              for target in MARKDOWN_LINK.findall(page.read_text())
              if "://" not in target and not (page.parent / target).exists()]
    assert not broken, broken
