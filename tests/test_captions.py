"""Caption sidecars of training.data.captions: odd JSON shapes, .txt sidecars, dataset scans."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from training.data.captions import (
    Caption,
    CaptionError,
    compose_prompt,
    find_caption_file,
    is_photographic,
    read_caption,
    scan_dataset,
)


def _image(path: Path) -> Path:
    """Write a small real photo (a crop of scikit-image's astronaut) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(data.astronaut()[:64, :64])).save(path)
    return path


def _caption_for(tmp_path: Path, sidecar: str, content: object, raw: bool = False) -> Caption:
    """Write ``content`` (JSON-encoded unless ``raw``) as ``sidecar`` beside a photo; read it."""
    image = _image(tmp_path / "face.png")
    text = str(content) if raw else json.dumps(content)
    (tmp_path / sidecar).write_text(text, encoding="utf-8")
    return read_caption(image)


def test_top_level_string_is_split_into_classified_tags(tmp_path: Path) -> None:
    caption = _caption_for(
        tmp_path,
        "face_qwen.json",
        "Asian Female, Floral Headpiece, Studio Lighting, Black Hair, Sharp Focus, Close-Up",
    )
    assert caption.text == ""
    assert caption.semantic_tags == ("Asian Female", "Floral Headpiece", "Black Hair")
    assert caption.photographic_tags == ("Studio Lighting", "Sharp Focus", "Close-Up")
    assert caption.source == tmp_path / "face_qwen.json"
    assert compose_prompt(caption) == (
        "Asian Female, Floral Headpiece, Black Hair, Studio Lighting, Sharp Focus, Close-Up"
    )


def test_nested_sections_set_the_class_and_metadata_is_ignored(tmp_path: Path) -> None:
    content = {
        "id": 11010,
        "File_Name": "woman_11010.png",
        "Semantic Tag": {
            "Person type": "Close-up",
            "Gender": "Female",
            "Clothe": ["Black top", "Delicate necklace"],
        },
        "PHOTOGRAPHIC TAG": {"Lighting": "Rembrandt", "Facial detail": {"skin": "visible pores"}},
        "width": 4000,
    }
    caption = _caption_for(tmp_path, "face_qwen.json", content)
    # "Close-up" is photographic by keyword, but the file puts it under the semantic section.
    assert caption.semantic_tags == ("Close-up", "Female", "Black top", "Delicate necklace")
    assert caption.photographic_tags == ("Rembrandt", "visible pores")
    assert "woman_11010" not in compose_prompt(caption)
    assert "4000" not in compose_prompt(caption)


def test_lists_of_tag_objects_and_dict_of_lists(tmp_path: Path) -> None:
    content = {
        "Tags": [
            {"tag": "woman", "score": 0.98},
            {"tag": "bokeh", "score": 0.71},
            {"Tag": "freckles", "confidence": 0.6},
        ],
        "semantic_tags": ["smiling", "Woman"],
        "photographic_tags": ["soft window light", "85mm", "shallow depth of field"],
    }
    caption = _caption_for(tmp_path, "face.json", content)
    assert caption.semantic_tags == ("woman", "freckles", "smiling")
    assert caption.photographic_tags == (
        "bokeh",
        "soft window light",
        "85mm",
        "shallow depth of field",
    )
    assert compose_prompt(caption) == (
        "woman, freckles, smiling, bokeh, soft window light, 85mm, shallow depth of field"
    )


def test_prose_is_kept_whole_before_the_tags(tmp_path: Path) -> None:
    prose = (
        "A close-up portrait of a young woman with red hair, looking straight at the camera. "
        "She wears a green scarf."
    )
    content = {"Description": prose, "attributes": {"hair": "red hair", "lighting": "backlit"}}
    caption = _caption_for(tmp_path, "face_qwen.json", content)
    assert caption.text == prose
    assert caption.semantic_tags == ("red hair",)
    assert caption.photographic_tags == ("backlit",)
    assert compose_prompt(caption) == prose + ", red hair, backlit"


def test_json_inside_a_fenced_chat_answer(tmp_path: Path) -> None:
    inner = {"semantic_tags": ["man", "beard"], "photographic_tags": "rim light; film grain"}
    answer = f"```json\n{json.dumps(inner)}\n```"
    caption = _caption_for(tmp_path, "face_qwen.json", {"response": answer})
    assert caption.semantic_tags == ("man", "beard")
    assert caption.photographic_tags == ("rim light", "film grain")


def test_prompt_is_deduplicated_across_classes_keeping_the_first_spelling(tmp_path: Path) -> None:
    content = {
        "caption": "Studio Lighting, woman, WOMAN,  woman ",
        "semantic": ["studio lighting", "Smiling", "smiling"],
    }
    caption = _caption_for(tmp_path, "face.json", content)
    assert caption.semantic_tags == ("woman", "studio lighting", "Smiling")
    assert caption.photographic_tags == ("Studio Lighting",)
    assert compose_prompt(caption) == "woman, studio lighting, Smiling"


def test_txt_sidecar(tmp_path: Path) -> None:
    caption = _caption_for(
        tmp_path, "face.txt", "portrait of an old man, wrinkles,\nnatural light\n", raw=True
    )
    assert caption.source == tmp_path / "face.txt"
    assert compose_prompt(caption) == "portrait of an old man, wrinkles, natural light"
    assert caption.photographic_tags == ("natural light",)


def test_invalid_json_raises_a_caption_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(CaptionError, match=r"face_qwen\.json is not valid JSON"):
        _caption_for(tmp_path, "face_qwen.json", '{"caption": "woman",', raw=True)


@pytest.mark.parametrize("content", ["", "  \n", "{}", "[]", '{"tags": []}', '{"id": 3}', "null"])
def test_empty_captions_read_as_empty(tmp_path: Path, content: str) -> None:
    caption = _caption_for(tmp_path, "face.json", content, raw=True)
    assert caption.is_empty
    assert compose_prompt(caption) == ""


def test_find_caption_file_prefers_the_qwen_json(tmp_path: Path) -> None:
    image = _image(tmp_path / "woman_1.png")
    assert find_caption_file(image) is None
    with pytest.raises(CaptionError, match="no caption file"):
        read_caption(image)
    for name in ("woman_1.txt", "woman_1.json", "woman_1_qwen.json"):
        (tmp_path / name).write_text('"woman"', encoding="utf-8")
        assert find_caption_file(image) == tmp_path / name


def test_photographic_keyword_rule() -> None:
    photographic = (
        "Studio Lighting", "soft light", "sharp focus", "skin texture", "visible pores",
        "Close-Up", "depth of field", "50mm", "f/1.4", "ISO 100", "film grain",
    )  # fmt: skip
    for tag in photographic:
        assert is_photographic(tag), tag
    for tag in ("light brown hair", "Asian Female", "smiling", "red scarf", "freckles"):
        assert not is_photographic(tag), tag


def test_scan_of_the_authface_hq_layout(tmp_path: Path) -> None:
    woman_ok = _image(tmp_path / "woman" / "woman_11010.png")
    (tmp_path / "woman" / "woman_11010_qwen.json").write_text(
        json.dumps({"caption": "woman, black hair, soft light"}), encoding="utf-8"
    )
    woman_missing = _image(tmp_path / "woman" / "woman_10566.png")
    man_ok = _image(tmp_path / "man" / "man_14935.PNG")
    (tmp_path / "man" / "man_14935_qwen.json").write_text(
        json.dumps({"Semantic": ["man", "beard"], "Photographic": ["sharp focus"]}),
        encoding="utf-8",
    )
    man_broken = _image(tmp_path / "man" / "man_11609.png")
    (tmp_path / "man" / "man_11609_qwen.json").write_text("{not json", encoding="utf-8")
    man_empty = _image(tmp_path / "man" / "man_20000.png")
    (tmp_path / "man" / "man_20000_qwen.json").write_text("{}", encoding="utf-8")
    man_binary = _image(tmp_path / "man" / "man_30000.png")
    (tmp_path / "man" / "man_30000.txt").write_bytes(b"\xff\xfe\x00caption")
    (tmp_path / "README.txt").write_text("not an image", encoding="utf-8")

    usable, rejected = scan_dataset(tmp_path)

    assert [image for image, _ in usable] == [man_ok, woman_ok]
    assert compose_prompt(usable[0][1]) == "man, beard, sharp focus"
    assert compose_prompt(usable[1][1]) == "woman, black hair, soft light"
    reasons = dict(rejected)
    assert set(reasons) == {man_broken, man_empty, man_binary, woman_missing}
    assert "not valid JSON" in reasons[man_broken]
    assert "empty caption" in reasons[man_empty]
    assert "UTF-8" in reasons[man_binary]
    assert "no caption file" in reasons[woman_missing]


def test_scan_of_a_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(CaptionError, match="not a directory"):
        scan_dataset(tmp_path / "nowhere")
