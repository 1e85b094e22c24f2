"""Images with captions: robust loading, folder data sets and the image adapter.

A data set is a folder of images plus a captions file:

* CSV, one row per image: ``file`` and one column per language (``en, de, ...``), optional
  ``nouns_<lang>`` columns (``;``-separated caption nouns, for the logit lens) and ``id``;
* JSONL, one object per image: ``{"file": ..., "captions": {"en": ..., ...},
  "nouns": {"en": [...]}}`` (flat ``"en": ...`` keys work too).

or the built-in synthetic set (modalities/synthetic_images.py). Loading (``load_image``)
returns an RGB image or raises :class:`ImageInputError` naming the file:

==========================================  ==================================================
input                                        what happens
==========================================  ==================================================
missing file, unknown extension              error (lists the supported extensions)
corrupt bytes, not an image                  error ("not a readable image")
truncated file (decoder runs out of data)    error ("truncated")
palette / grey / alpha / CMYK modes          converted to RGB (alpha composited on white),
                                             counted as a repair
==========================================  ==================================================

The adapter yields, per caption language, the image inside the model's image prompt (read
at the image-token span, mean or last) paired with the caption (last token).
"""
from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from hub.contract import PairedSet, Side
from hub.errors import UserError, UserFileError
from modalities.base import Adapter, check_min_pairs, register_adapter
from modalities.synthetic_images import LANGS, ImageItem, synthetic_items

SUPPORTED = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class ImageInputError(UserError):
    """An image file that cannot be used; the message names the file and what was expected."""

    def __init__(self, path: str | Path, problem: str, reason: str = "unreadable") -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.reason = str(path), reason


def load_image(path: str | Path, repairs: Counter | None = None) -> Image.Image:
    """Open, fully decode and convert one image to RGB (errors name the file)."""
    path = Path(path)
    if not path.is_file():
        raise ImageInputError(path, "no such image file", "missing")
    if path.suffix.lower() not in SUPPORTED:
        raise ImageInputError(path, f"unsupported image format {path.suffix or '(no extension)'!r}; expected one of "
                                    f"{', '.join(SUPPORTED)}", "unsupported format")
    try:
        with Image.open(path) as im:
            im.load()  # decode now: truncation shows up here, not later in the processor
            img = im.copy()
    except UnidentifiedImageError as e:
        raise ImageInputError(path, "not a readable image (corrupt, or not an image)", "corrupt") from e
    except OSError as e:
        kind = "truncated" if "truncat" in str(e).lower() else "corrupt"
        raise ImageInputError(path, f"{'truncated image file' if kind == 'truncated' else 'corrupt image'} ({e})",
                              kind) from e
    except Exception as e:  # noqa: BLE001 - decoder plugins raise assorted types (SyntaxError, ValueError ...)
        raise ImageInputError(path, f"not a readable image ({type(e).__name__}: {e})", "corrupt") from e
    if img.mode != "RGB":
        if repairs is not None:
            repairs[f"converted {img.mode} to RGB"] += 1
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            bg = Image.new("RGB", rgba.size, (255, 255, 255))
            bg.paste(rgba, mask=rgba.split()[-1])
            img = bg
        else:
            img = img.convert("RGB")
    return img


# ----------------------------------------------------------------------- captions
def read_captions(path: str | Path) -> list[dict]:
    """Rows ``{file, id, captions: {lang: text}, nouns: {lang: [..]}}`` from CSV or JSONL."""
    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"{path}: no captions file (expected CSV or JSONL with a 'file' column)")
    if path.suffix in (".jsonl", ".json"):
        raw = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                try:
                    raw.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}: line {i + 1} is not valid JSON ({e})") from e
    else:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
    rows = []
    for i, r in enumerate(raw):
        if "file" not in r:
            raise UserError(f"{path}: row {i + 1} has no 'file' field")
        caps = dict(r.get("captions") or {k: v for k, v in r.items() if k in _lang_codes(r)})
        nouns = dict(r.get("nouns") or {})
        for k, v in r.items():
            if k.startswith("nouns_") and v:
                nouns[k[6:]] = [w.strip() for w in str(v).split(";") if w.strip()]
        rows.append({"file": r["file"], "id": str(r.get("id") or Path(r["file"]).stem),
                     "captions": {k: str(v) for k, v in caps.items() if str(v).strip()}, "nouns": nouns})
    return rows


def _lang_codes(row: dict) -> list[str]:
    """Keys that are ISO 639-1 codes (caption columns of a flat row); ``id`` is the item id,
    not Indonesian (use the nested ``captions`` form for Indonesian captions)."""
    return [k for k in row if isinstance(k, str) and k in _iso_codes() and k not in ("id",)]


@functools.lru_cache(maxsize=1)
def _iso_codes() -> frozenset[str]:
    return frozenset((Path(__file__).parent / "data" / "iso639_1.txt").read_text().split())


@dataclass
class ImageSet:
    items: list[ImageItem]
    drops: Counter = field(default_factory=Counter)
    repairs: Counter = field(default_factory=Counter)


def load_folder(folder: str | Path, captions: str | Path | None = None, on_error: str = "drop") -> ImageSet:
    """Images of a folder with their captions; unusable files dropped and counted (or raise)."""
    folder = Path(folder)
    cap_path = Path(captions) if captions else next(
        (folder / n for n in ("captions.csv", "captions.jsonl") if (folder / n).is_file()), folder / "captions.csv")
    items, drops, repairs = [], Counter(), Counter()
    rows = read_captions(cap_path)
    unread: list[str] = []
    for r in rows:
        try:
            img = load_image(folder / r["file"], repairs)
        except ImageInputError as e:
            if on_error == "raise":
                raise
            drops[e.reason] += 1
            unread.append(f"{r['file']} ({e.reason})")
            continue
        if not r["captions"]:
            if on_error == "raise":
                raise UserError(f"{folder / r['file']}: no caption in any language")
            drops["no caption"] += 1
            continue
        items.append(ImageItem(r["id"], img, r["captions"], r["nouns"], "folder"))
    if not rows:
        raise UserError(f"{cap_path}: lists no images; expected one row per image file with its captions")
    if not items:
        why = (f"{len(unread)} of {len(rows)} images could not be read: {', '.join(unread[:10])}"
               + (", ..." if len(unread) > 10 else "") if unread else f"none of its {len(rows)} images has a caption")
        raise UserError(f"{folder}: {why}; expected readable images ({', '.join(SUPPORTED)}) with captions")
    return ImageSet(items, drops, repairs)


# ------------------------------------------------------------------------ adapter
@register_adapter("image")
class ImageAdapter(Adapter):
    """Images vs captions for vision-language models (``pairs`` takes the MultimodalHubModel)."""

    modality = "image"

    def __init__(self, source: str = "synthetic", captions: str | None = None,
                 languages: Sequence[str] = LANGS, kinds: Sequence[str] = ("colour", "shapes", "word"),
                 image_positions: str = "mean", caption_template: str = "{x}", prompt: str | None = None,
                 max_items: int | None = None, seed: int = 0, on_error: str = "drop") -> None:
        super().__init__()
        if image_positions not in ("mean", "last"):
            raise UserError(f"image_positions={image_positions!r}: expected 'mean' or 'last' (over the image tokens)")
        if "{x}" not in caption_template:
            raise UserError(f"caption_template {caption_template!r} must contain {{x}}")
        self.source, self.captions, self.languages, self.kinds = source, captions, list(languages), list(kinds)
        self.image_positions, self.caption_template, self.prompt = image_positions, caption_template, prompt
        self.max_items, self.seed, self.on_error = max_items, seed, on_error
        self.repairs: Counter = Counter()
        self._items: list[ImageItem] | None = None

    def items(self) -> list[ImageItem]:
        """The data set's items (loaded once)."""
        if self._items is None:
            if self.source == "synthetic":
                items = synthetic_items(self.kinds, seed=self.seed)
            else:
                s = load_folder(self.source, self.captions, self.on_error)
                self.drops.update(s.drops)
                self.repairs.update(s.repairs)
                items = s.items
            self._items = items[: self.max_items] if self.max_items else items
        return self._items

    def image_side(self, model, items: Sequence[ImageItem]) -> Side:
        """Encode each image with the model's processor; positions = its image-token span."""
        enc = [model.encode_image(it.image, self.prompt) for it in items]
        positions = "mean" if self.image_positions == "mean" else [[e.positions[-1]] for e in enc]
        return Side([e.ids for e in enc], "image", positions, spans=[e.span for e in enc],
                    extra=[e.extra for e in enc], label="image")

    def pairs(self, model=None) -> Iterator[PairedSet]:
        if not hasattr(model, "encode_image"):
            raise UserError("the image modality needs the vision-language model (model.kind: vlm, e.g. model=tiny_llava "
                            "or model=llava_1_5_7b; hub.models.vlm.MultimodalHubModel), got "
                             f"{type(model).__name__}")
        items = self.items()
        image_side = None
        for lang in self.languages:
            have = [it for it in items if lang in it.captions]
            if len(have) < len(items):
                self.drop(f"no {lang} caption", len(items) - len(have))
            if not have:
                continue
            check_min_pairs(len(have), f"image-caption pairs in {lang}")
            side = image_side if image_side is not None and len(have) == len(items) else self.image_side(model, have)
            if len(have) == len(items):
                image_side = side
            caps = [self.caption_template.format(x=it.captions[lang]) for it in have]
            yield PairedSet(
                name=f"image:{lang}", a=side, b=Side(caps, "text", "last", label=f"caption:{lang}"),
                ids={"task": "image-caption", "lang": lang, "src": "image", "tgt": lang, "modality": "image"},
                items=[it.id for it in have],
            )
