"""Image loading, caption files and the synthetic set: bad input is a named error or a counted repair."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from PIL import Image

from modalities.image import ImageAdapter, ImageInputError, load_folder, load_image, read_captions
from modalities.synthetic_images import LANGS, shape_caption, synthetic_items


def save(path, mode="RGB", size=(20, 16), colour=None):
    Image.new(mode, size, colour if colour is not None else (200, 10, 10)).save(path)
    return path


def test_rgb_png_loads(tmp_path):
    img = load_image(save(tmp_path / "a.png"))
    assert img.mode == "RGB" and img.size == (20, 16)


@pytest.mark.parametrize("mode,colour", [("L", 128), ("P", 3), ("RGBA", (255, 0, 0, 0)), ("CMYK", (0, 255, 0, 0))])
def test_other_modes_are_converted_and_counted(tmp_path, mode, colour):
    path = save(tmp_path / ("a.tif" if mode == "CMYK" else "a.png"), mode, colour=colour)
    repairs = Counter()
    img = load_image(path, repairs)
    assert img.mode == "RGB" and repairs == Counter({f"converted {mode} to RGB": 1})
    if mode == "RGBA":  # fully transparent pixels are composited on white
        assert img.getpixel((0, 0)) == (255, 255, 255)


def test_corrupt_image(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"definitely not a png" * 10)
    with pytest.raises(ImageInputError, match=r"bad\.png: not a readable image") as e:
        load_image(path)
    assert e.value.reason == "corrupt"


def test_truncated_image(tmp_path):
    path = tmp_path / "t.jpg"
    Image.effect_noise((64, 64), 50).convert("RGB").save(path, quality=95)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageInputError, match=r"t\.jpg: truncated image file") as e:
        load_image(path)
    assert e.value.reason == "truncated"


def test_unsupported_and_missing(tmp_path):
    path = tmp_path / "a.svg"
    path.write_text("<svg/>")
    with pytest.raises(ImageInputError, match=r"a\.svg: unsupported image format '\.svg'"):
        load_image(path)
    with pytest.raises(ImageInputError, match=r"nope\.png: no such image file"):
        load_image(tmp_path / "nope.png")


def test_folder_with_csv_captions_drops_and_counts(tmp_path):
    save(tmp_path / "a.png")
    save(tmp_path / "b.png", "L", colour=7)
    (tmp_path / "c.png").write_bytes(b"junk")
    (tmp_path / "captions.csv").write_text(
        "file,en,de,nouns_en\na.png,a red square,ein rotes Quadrat,square;red\nb.png,grey,grau,\n"
        "c.png,junk,Müll,\nd.png,missing,fehlt,\n", encoding="utf-8")
    s = load_folder(tmp_path)
    assert [it.id for it in s.items] == ["a", "b"]
    assert s.items[0].captions == {"en": "a red square", "de": "ein rotes Quadrat"}
    assert s.items[0].nouns == {"en": ["square", "red"]}
    assert s.drops == Counter({"corrupt": 1, "missing": 1}) and s.repairs == Counter({"converted L to RGB": 1})
    with pytest.raises(ImageInputError, match=r"c\.png"):
        load_folder(tmp_path, on_error="raise")


def test_jsonl_captions(tmp_path):
    rows = [{"file": "x.png", "captions": {"en": "a dog", "fr": "un chien"}, "nouns": {"en": ["dog"]}},
            {"file": "y.png", "en": "a cat", "id": "cat1"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    got = read_captions(tmp_path / "c.jsonl")
    assert got[0]["captions"] == {"en": "a dog", "fr": "un chien"} and got[0]["nouns"] == {"en": ["dog"]}
    assert got[1]["id"] == "cat1" and got[1]["captions"] == {"en": "a cat"}
    (tmp_path / "bad.jsonl").write_text('{"file": "a.png"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 2 is not valid JSON"):
        read_captions(tmp_path / "bad.jsonl")


def test_synthetic_set_has_six_languages_and_is_deterministic():
    items = synthetic_items()
    assert len(items) == 6 + 60 + 12
    assert all(set(it.captions) == set(LANGS) for it in items)
    again = synthetic_items()
    assert all(a.image.tobytes() == b.image.tobytes() for a, b in zip(items, again))
    assert len({it.image.tobytes() for it in items}) == len(items)
    solid = [it for it in items if it.kind == "colour"]
    assert all(len(it.image.getcolors()) == 1 for it in solid)


def test_shape_captions_grammar():
    assert shape_caption("en", 3, "red", "circle") == "three red circles"
    assert shape_caption("de", 1, "red", "circle") == "ein roter Kreis"
    assert shape_caption("de", 1, "blue", "square") == "ein blaues Quadrat"
    assert shape_caption("de", 2, "green", "triangle") == "zwei grüne Dreiecke"
    assert shape_caption("fr", 2, "green", "circle") == "deux cercles verts"
    assert shape_caption("es", 4, "blue", "square") == "cuatro cuadrados azules"
    assert shape_caption("it", 1, "yellow", "triangle") == "un triangolo giallo"
    assert shape_caption("pt", 3, "black", "circle") == "três círculos pretos"


def test_adapter_validates_options_and_needs_a_model():
    with pytest.raises(ValueError, match="image_positions"):
        ImageAdapter(image_positions="first")
    with pytest.raises(ValueError, match="caption_template"):
        ImageAdapter(caption_template="no placeholder")
    with pytest.raises(ValueError, match="needs the vision-language model"):
        next(ImageAdapter(max_items=4).pairs(object()))
