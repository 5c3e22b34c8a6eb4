"""Caption sidecars of training images, read robustly, and the photography-guided prompt.

AuthFace-HQ stores ``woman/woman_11010.png`` next to ``woman/woman_11010_qwen.json``
(captions written by Qwen) and ``man/...`` alike; the JSON schema is not documented, so any
reasonable shape is accepted:

- a string at the top level, or a list of strings;
- objects, nested at any depth, with lists anywhere, including lists of
  ``{"tag": "...", "score": 0.9}``. Keys are compared case-insensitively (spaces and dashes
  as underscores). A key containing "photograph" (``photographic_tags``, ``Photographic
  Tag``, ``photography``) or named ``photo``/``photo_tags`` makes every tag below it
  photographic; a key starting with "semantic" (``semantic_tags``) makes them semantic. Any
  other key (``caption``, ``text``, ``description``, ``prompt``, ``tags``, ``attributes``,
  ``Gender``...) passes its strings on, classified by keyword; a key that is itself a
  photographic word (``Lighting``, ``Focus``) makes its values photographic. Metadata keys
  (``id``, ``file_name``, ``width``, ``score``...) and non-string values are ignored;
- a string that itself holds JSON (optionally in a ```json fence, as chat models answer).

Plain-text sidecars (``img.txt``, ``img.caption``) hold a caption string, as in most other
datasets.

Strings are split into tags at commas, semicolons and line breaks when every piece is short
(at most :data:`MAX_TAG_WORDS` words, no sentence inside); otherwise the string is prose and
kept whole as free text. A tag below a semantic or photographic key has that class; any other
tag is photographic when it contains a word of :data:`PHOTOGRAPHIC_KEYWORDS` (or a phrase of
:data:`PHOTOGRAPHIC_PHRASES`, a focal length like "85mm" or an f-number like "f/1.8"),
otherwise semantic.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from authface_core.errors import AuthFaceError

JsonValue = Union[str, int, float, bool, None, list["JsonValue"], dict[str, "JsonValue"]]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})

# Sidecar names tried for ``<stem>.<ext>``, in this order: AuthFace-HQ's Qwen JSON first.
CAPTION_SUFFIXES = ("_qwen.json", ".json", ".txt", ".caption")

# Words that mark a tag as photographic: light, focus, optics, texture, capture, framing
# (the paper's photographic tags, Fig. 2: lighting, sharp focus, skin texture, close-up...).
# "light" alone is only photographic as a tag's last word ("soft light"), so colours such as
# "light brown hair" stay semantic.
PHOTOGRAPHIC_KEYWORDS = frozenset(
    {
        "lighting", "lit", "backlit", "backlight", "backlighting", "shadow", "shadows", "bokeh",
        "focus", "sharp", "sharpness", "blur", "blurred", "blurry",
        "texture", "textures", "pores", "lens", "aperture", "iso", "exposure", "contrast",
        "film", "grain", "studio", "photography", "photograph", "shot", "closeup",
        "resolution", "hdr", "camera", "dslr", "composition", "angle", "view", "cinematic",
    }
)  # fmt: skip
PHOTOGRAPHIC_PHRASES = ("depth of field", "close up", "skin detail")
_LAST_WORD_KEYWORDS = frozenset({"light", "lights"})
_LENS_PATTERN = re.compile(r"\b\d+(\.\d+)?\s?mm\b|\bf/\d")

MAX_TAG_WORDS = 8

_IGNORED_KEYS = frozenset(
    {
        "id", "image", "image_id", "image_path", "image_name", "file", "file_name", "filename",
        "path", "url", "width", "height", "size", "model", "version", "md5", "sha256", "hash",
        "score", "confidence", "probability",
    }
)  # fmt: skip

_PHOTO_KEYS = frozenset({"photo", "photo_tag", "photo_tags"})

_SPLIT_PATTERN = re.compile(r"[,;\n]+")
_SENTENCE_PATTERN = re.compile(r"[.!?]\s+\S")
_FENCE_PATTERN = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.DOTALL)
_WORD_PATTERN = re.compile(r"[a-z0-9]+")


class CaptionError(AuthFaceError):
    """A caption sidecar is missing, unreadable or not valid JSON."""


@dataclass(frozen=True)
class Caption:
    """The caption of one image.

    ``text`` is free prose found in the sidecar ("" if none), the tag tuples are
    deduplicated (case-insensitively, first spelling kept) in reading order, ``source`` is
    the sidecar the caption came from.
    """

    text: str
    semantic_tags: tuple[str, ...]
    photographic_tags: tuple[str, ...]
    source: Path

    @property
    def is_empty(self) -> bool:
        """True when the caption holds neither text nor tags."""
        return not (self.text or self.semantic_tags or self.photographic_tags)


def find_caption_file(image_path: str | Path) -> Path | None:
    """The caption sidecar of ``image_path``: the first existing of ``<stem>_qwen.json``,
    ``<stem>.json``, ``<stem>.txt``, ``<stem>.caption`` in the image's folder, else None."""
    image = Path(image_path)
    for suffix in CAPTION_SUFFIXES:
        candidate = image.with_name(image.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def is_photographic(tag: str) -> bool:
    """Whether ``tag`` is a photographic tag by the keyword rule of this module's docstring."""
    lowered = tag.lower()
    words = _WORD_PATTERN.findall(lowered)
    if not words:
        return False
    if any(word in PHOTOGRAPHIC_KEYWORDS for word in words) or words[-1] in _LAST_WORD_KEYWORDS:
        return True
    joined = " " + " ".join(words) + " "
    return any(f" {phrase} " in joined for phrase in PHOTOGRAPHIC_PHRASES) or bool(
        _LENS_PATTERN.search(lowered)
    )


def _normalise_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


def _clean_tag(piece: str) -> str:
    return " ".join(piece.split()).strip(" \"'`*-.:").strip()


def _dedup_key(tag: str) -> str:
    return " ".join(tag.lower().split())


def _split_tags(text: str) -> list[str] | None:
    """The tags of a tag-style string, or None when it reads as prose."""
    pieces = [_clean_tag(piece) for piece in _SPLIT_PATTERN.split(text)]
    pieces = [piece for piece in pieces if piece]
    if any(
        len(piece.split()) > MAX_TAG_WORDS or _SENTENCE_PATTERN.search(piece) for piece in pieces
    ):
        return None
    return pieces


def _embedded_json(text: str) -> JsonValue | None:
    """The JSON object or list held in a string (bare or in a code fence), else None."""
    stripped = text.strip()
    fenced = _FENCE_PATTERN.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    if not stripped.startswith(("{", "[")):
        return None
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, (dict, list)) else None


class _Collector:
    """Walks a parsed sidecar and gathers free text and classified tags.

    A role is "text" (tags classified by keyword), "semantic" or "photographic" (tags take
    that class); prose is free text under any role.
    """

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.semantic: list[str] = []
        self.photographic: list[str] = []

    def add_string(self, text: str, role: str) -> None:
        embedded = _embedded_json(text)
        if embedded is not None:
            self.walk(embedded, role)
            return
        tags = _split_tags(text)
        if tags is None:
            self.texts.append(" ".join(text.split()))
            return
        for tag in tags:
            if role == "photographic" or (role == "text" and is_photographic(tag)):
                self.photographic.append(tag)
            else:
                self.semantic.append(tag)

    def walk(self, value: JsonValue, role: str) -> None:
        if isinstance(value, str):
            self.add_string(value, role)
        elif isinstance(value, list):
            for item in value:
                self.walk(item, role)
        elif isinstance(value, dict):
            for key, item in value.items():
                child_role = _role_for_key(str(key), role)
                if child_role is not None:
                    self.walk(item, child_role)


def _role_for_key(key: str, parent_role: str) -> str | None:
    """The role of the value under ``key`` (None: ignore it). Keys naming a tag class set
    it; any other key keeps the parent's role, except that under a generic parent a key
    that is itself a photographic word ("Lighting", "Focus") makes its value photographic."""
    name = _normalise_key(key)
    if name in _IGNORED_KEYS:
        return None
    if "photograph" in name or name in _PHOTO_KEYS:
        return "photographic"
    if name.startswith("semantic"):
        return "semantic"
    if parent_role == "text" and is_photographic(name.replace("_", " ")):
        return "photographic"
    return parent_role


def _dedup(tags: list[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    kept = []
    for tag in tags:
        key = _dedup_key(tag)
        if key not in seen:
            seen.add(key)
            kept.append(tag)
    return tuple(kept)


def parse_caption(content: str, source: Path, is_json: bool) -> Caption:
    """A :class:`Caption` from a sidecar's text (JSON when ``is_json``; plain text otherwise).

    Raises :class:`CaptionError` on invalid JSON. Blank content gives an empty caption.
    """
    collector = _Collector()
    if content.strip():
        if is_json:
            try:
                value = json.loads(content)
            except json.JSONDecodeError as exc:
                raise CaptionError(
                    f"{source} is not valid JSON ({exc.msg} at line {exc.lineno} column "
                    f"{exc.colno}); fix or delete the file"
                ) from exc
        else:
            value = content
        collector.walk(value, "text")
    return Caption(
        text=" ".join(collector.texts),
        semantic_tags=_dedup(collector.semantic),
        photographic_tags=_dedup(collector.photographic),
        source=source,
    )


def read_caption(image_path: str | Path) -> Caption:
    """The caption of ``image_path`` from its sidecar (see :func:`find_caption_file`).

    Raises :class:`CaptionError` when there is no sidecar, it cannot be read as UTF-8 text,
    or a ``.json`` sidecar is not valid JSON. An empty sidecar gives an empty caption
    (``Caption.is_empty``).
    """
    source = find_caption_file(image_path)
    if source is None:
        tried = ", ".join(Path(image_path).stem + suffix for suffix in CAPTION_SUFFIXES)
        raise CaptionError(f"no caption file for {image_path}; expected one of: {tried}")
    try:
        content = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptionError(f"cannot read caption file {source} as UTF-8 text: {exc}") from exc
    return parse_caption(content, source, is_json=source.suffix.lower() == ".json")


def compose_prompt(caption: Caption) -> str:
    """The photography-guided prompt: free text, then semantic tags, then photographic tags,
    joined by ", ", tags deduplicated case-insensitively (first spelling and order kept).
    "" for an empty caption. Long prompts are returned whole: fitting them to the text
    encoders' 77-token window is the tokenizer's job."""
    parts = [caption.text] if caption.text else []
    parts.extend(_dedup([*caption.semantic_tags, *caption.photographic_tags]))
    return ", ".join(parts)


def scan_dataset(root: str | Path) -> tuple[list[tuple[Path, Caption]], list[tuple[Path, str]]]:
    """All images under ``root`` (recursively, sorted; suffixes in :data:`IMAGE_SUFFIXES`,
    any case) split into (image, caption) pairs with a non-empty prompt, and (image, reason)
    for the others: no caption file, unreadable or invalid sidecar, or an empty caption.

    Raises :class:`CaptionError` when ``root`` is not a directory.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise CaptionError(
            f"dataset root {folder} is not a directory; pass the folder holding the images"
        )
    usable: list[tuple[Path, Caption]] = []
    rejected: list[tuple[Path, str]] = []
    images = sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )
    for image in images:
        try:
            caption = read_caption(image)
        except CaptionError as exc:
            rejected.append((image, str(exc)))
            continue
        if compose_prompt(caption):
            usable.append((image, caption))
        else:
            rejected.append((image, f"empty caption in {caption.source}"))
    return usable, rejected
