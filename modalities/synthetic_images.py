"""A built-in image–caption set drawn with Pillow, captioned in six languages.

Three kinds of item, each with captions in en, de, fr, es, it, pt and the caption's nouns
(the words the logit lens looks for at image positions):

* ``colour`` — a solid-colour image: "the colour red" / "die Farbe Rot" / "la couleur rouge" ...
* ``shapes`` — 1–4 shapes of one colour and kind on white: "three red circles" /
  "drei rote Kreise" / "trois cercles rouges" ... (grammar written out per language: the
  shapes are masculine in fr/es/it/pt, German inflects the adjective by gender and number).
* ``word`` — an English word rendered in black on white; captions are the word's
  translation in each language (from modalities/data/words.csv).

Everything is deterministic given ``seed`` (shape positions and sizes are drawn from it).
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from hub.errors import UserError

LANGS = ("en", "de", "fr", "es", "it", "pt")
SIZE = 224
WORDS = Path(__file__).parent / "data" / "words.csv"

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 220),
    "yellow": (240, 210, 20), "black": (10, 10, 10), "white": (250, 250, 250),
}
# colour words: noun/base form, then adjective forms keyed by (gender, number) where needed
COLOUR_WORDS = {
    "en": {c: c for c in COLOURS},
    "de": {"red": "Rot", "green": "Grün", "blue": "Blau", "yellow": "Gelb", "black": "Schwarz", "white": "Weiß"},
    "fr": {"red": "rouge", "green": "vert", "blue": "bleu", "yellow": "jaune", "black": "noir", "white": "blanc"},
    "es": {"red": "rojo", "green": "verde", "blue": "azul", "yellow": "amarillo", "black": "negro", "white": "blanco"},
    "it": {"red": "rosso", "green": "verde", "blue": "blu", "yellow": "giallo", "black": "nero", "white": "bianco"},
    "pt": {"red": "vermelho", "green": "verde", "blue": "azul", "yellow": "amarelo", "black": "preto",
           "white": "branco"},
}
COLOUR_PLURAL = {
    "fr": {"red": "rouges", "green": "verts", "blue": "bleus", "yellow": "jaunes", "black": "noirs", "white": "blancs"},
    "es": {"red": "rojos", "green": "verdes", "blue": "azules", "yellow": "amarillos", "black": "negros",
           "white": "blancos"},
    "it": {"red": "rossi", "green": "verdi", "blue": "blu", "yellow": "gialli", "black": "neri", "white": "bianchi"},
    "pt": {"red": "vermelhos", "green": "verdes", "blue": "azuis", "yellow": "amarelos", "black": "pretos",
           "white": "brancos"},
}
COLOUR_CAPTION = {"en": "the colour {c}", "de": "die Farbe {c}", "fr": "la couleur {c}", "es": "el color {c}",
                  "it": "il colore {c}", "pt": "a cor {c}"}
# Portuguese "cor" is feminine: a cor vermelha / amarela / preta / branca
PT_FEMININE = {"red": "vermelha", "green": "verde", "blue": "azul", "yellow": "amarela", "black": "preta",
               "white": "branca"}
# German colour adjective stems (lower case) for inflection
DE_STEM = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "black": "schwarz", "white": "weiß"}
SHAPES = {  # (singular, plural) per language; German gender for adjective endings
    "circle": {"en": ("circle", "circles"), "de": ("Kreis", "Kreise", "m"), "fr": ("cercle", "cercles"),
               "es": ("círculo", "círculos"), "it": ("cerchio", "cerchi"), "pt": ("círculo", "círculos")},
    "square": {"en": ("square", "squares"), "de": ("Quadrat", "Quadrate", "n"), "fr": ("carré", "carrés"),
               "es": ("cuadrado", "cuadrados"), "it": ("quadrato", "quadrati"), "pt": ("quadrado", "quadrados")},
    "triangle": {"en": ("triangle", "triangles"), "de": ("Dreieck", "Dreiecke", "n"), "fr": ("triangle", "triangles"),
                 "es": ("triángulo", "triángulos"), "it": ("triangolo", "triangoli"),
                 "pt": ("triângulo", "triângulos")},
}
NUMBERS = {"en": ("one", "two", "three", "four"), "de": ("ein", "zwei", "drei", "vier"),
           "fr": ("un", "deux", "trois", "quatre"), "es": ("un", "dos", "tres", "cuatro"),
           "it": ("un", "due", "tre", "quattro"), "pt": ("um", "dois", "três", "quatro")}
SHAPE_COLOURS = ("red", "green", "blue", "yellow", "black")  # white shapes on white are invisible
RENDERED = ("dog", "cat", "house", "tree", "water", "bread", "sun", "book", "car", "fish", "bird", "apple")


@dataclass
class ImageItem:
    """An image with captions and caption nouns per language (``colour`` set for colour items)."""

    id: str
    image: Image.Image
    captions: dict[str, str]
    nouns: dict[str, list[str]] = field(default_factory=dict)
    kind: str = "folder"
    colour: str | None = None


def shape_caption(lang: str, count: int, colour: str, shape: str) -> str:
    """"three red circles" in ``lang`` (see the module docstring for the grammar covered)."""
    num = NUMBERS[lang][count - 1]
    forms = SHAPES[shape][lang]
    noun = forms[0] if count == 1 else forms[1]
    if lang == "en":
        return f"{num} {colour} {noun}"
    if lang == "de":
        stem, gender = DE_STEM[colour], forms[2]
        adj = stem + ("e" if count > 1 else ("er" if gender == "m" else "es"))
        return f"{num} {adj} {noun}"
    adj = COLOUR_WORDS[lang][colour] if count == 1 else COLOUR_PLURAL[lang][colour]
    return f"{num} {noun} {adj}"


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def _place(rng: random.Random, count: int, size: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping boxes: one per cell of a 2x2 grid, jittered inside the cell."""
    cells = rng.sample([(0, 0), (1, 0), (0, 1), (1, 1)], count)
    half, boxes = size // 2, []
    for cx, cy in cells:
        s = rng.randint(half // 2, half - 16)
        x = cx * half + rng.randint(4, half - s - 4)
        y = cy * half + rng.randint(4, half - s - 4)
        boxes.append((x, y, x + s, y + s))
    return boxes


def colour_items(size: int = SIZE) -> list[ImageItem]:
    out = []
    for c, rgb in COLOURS.items():
        caps = {lang: COLOUR_CAPTION[lang].format(c=PT_FEMININE[c] if lang == "pt" else COLOUR_WORDS[lang][c])
                for lang in LANGS}
        nouns = {lang: [COLOUR_WORDS[lang][c]] for lang in LANGS}
        out.append(ImageItem(f"colour_{c}", Image.new("RGB", (size, size), rgb), caps, nouns, "colour", c))
    return out


def shape_items(seed: int = 0, size: int = SIZE, counts: Sequence[int] = (1, 2, 3, 4)) -> list[ImageItem]:
    rng, out = random.Random(seed), []
    for shape in SHAPES:
        for colour in SHAPE_COLOURS:
            for count in counts:
                img = Image.new("RGB", (size, size), COLOURS["white"])
                draw = ImageDraw.Draw(img)
                for box in _place(rng, count, size):
                    _draw_shape(draw, shape, box, COLOURS[colour])
                caps = {lang: shape_caption(lang, count, colour, shape) for lang in LANGS}
                nouns = {lang: [*dict.fromkeys(SHAPES[shape][lang][:2]), COLOUR_WORDS[lang][colour]] for lang in LANGS}
                out.append(ImageItem(f"{count}_{colour}_{shape}", img, caps, nouns, "shapes", colour))
    return out


def word_items(size: int = SIZE, words: Sequence[str] = RENDERED) -> list[ImageItem]:
    import pandas as pd

    table = pd.read_csv(WORDS, dtype=str, keep_default_na=False).set_index("en")
    font = ImageFont.load_default(size=size // 5)
    out = []
    for w in words:
        if w not in table.index:
            continue
        img = Image.new("RGB", (size, size), COLOURS["white"])
        draw = ImageDraw.Draw(img)
        x0, y0, x1, y1 = draw.textbbox((0, 0), w, font=font)
        draw.text(((size - (x1 - x0)) // 2 - x0, (size - (y1 - y0)) // 2 - y0), w, fill=COLOURS["black"], font=font)
        caps = {lang: (w if lang == "en" else table.at[w, lang]) for lang in LANGS}
        out.append(ImageItem(f"word_{w}", img, caps, {lang: [caps[lang]] for lang in LANGS}, "word"))
    return out


KINDS = {"colour": colour_items, "shapes": shape_items, "word": word_items}


def synthetic_items(kinds: Sequence[str] = ("colour", "shapes", "word"), seed: int = 0, size: int = SIZE
                    ) -> list[ImageItem]:
    """The built-in set: 6 colours, 60 shape images (3 shapes x 5 colours x 1-4), 12 words."""
    out = []
    for k in kinds:
        if k not in KINDS:
            raise UserError(f"unknown synthetic image kind {k!r}; expected some of {sorted(KINDS)}")
        out += KINDS[k](size=size) if k != "shapes" else shape_items(seed, size)
    return out
