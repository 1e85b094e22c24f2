"""Build the shipped WiC sets (modalities/data/wic/) from sense inventories written for them.

Rebuild: ``python -c "from modalities.wic import DATA; from modalities.wic_build import
build_from_inventory; build_from_inventory(DATA / 'en_senses.tsv', DATA / 'en')"``.
"""
from __future__ import annotations

import csv
import random
import re
from itertools import combinations, product
from pathlib import Path

from hub.errors import UserError


def build_from_inventory(inventory: str | Path, out_dir: str | Path, pairs_per_word: int = 3,
                         fractions: tuple[float, float] = (0.5, 0.18), seed: int = 0) -> dict[str, int]:
    """Write train/dev/test WiC files from a sense inventory (TSV: word, pos, sense, sentence
    with the target form in braces, e.g. ``the {bank} of the river``).

    Per word: ``pairs_per_word`` same-sense (T) and as many different-sense (F) pairs,
    sampled with ``seed``. Splits are by *word* (train/dev/test words are disjoint), so no
    sentence is seen in two splits. Returns the number of pairs per split.
    """
    inventory, out_dir = Path(inventory), Path(out_dir)
    with inventory.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    words: dict[str, dict] = {}
    for k, r in enumerate(rows, start=2):
        m = re.search(r"\{([^}]+)\}", r["sentence"])
        if not m:
            raise UserError(f"{inventory}:{k}: no {{target}} in {r['sentence']!r}")
        plain = r["sentence"].replace("{", "").replace("}", "")
        index = len(r["sentence"][: m.start()].split())
        words.setdefault(r["word"], {"pos": r["pos"], "senses": {}})["senses"].setdefault(r["sense"], []).append(
            (plain, index))
    rng = random.Random(seed)
    names = sorted(words)
    rng.shuffle(names)
    n_train, n_dev = round(fractions[0] * len(names)), round(fractions[1] * len(names))
    split_of = {w: ("train" if i < n_train else "dev" if i < n_train + n_dev else "test") for i, w in enumerate(names)}
    lines: dict[str, list[tuple[str, str]]] = {"train": [], "dev": [], "test": []}
    for w in sorted(words):
        senses = list(words[w]["senses"].values())
        same = [p for sent in senses for p in combinations(sent, 2)]
        diff = [p for a, b in combinations(senses, 2) for p in product(a, b)]
        if len(same) < pairs_per_word or len(diff) < pairs_per_word:
            raise UserError(f"{inventory}: word {w!r} has too few sentences for {pairs_per_word} T and F pairs")
        chosen = [(p, "T") for p in rng.sample(same, pairs_per_word)]
        chosen += [(p, "F") for p in rng.sample(diff, pairs_per_word)]
        for (x, y), gold in chosen:
            if rng.random() < 0.5:
                x, y = y, x
            lines[split_of[w]].append((f"{w}\t{words[w]['pos']}\t{x[1]}-{y[1]}\t{x[0]}\t{y[0]}", gold))
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, ls in lines.items():
        (out_dir / f"{split}.data.txt").write_text("".join(d + "\n" for d, _ in ls), encoding="utf-8")
        (out_dir / f"{split}.gold.txt").write_text("".join(g + "\n" for _, g in ls), encoding="utf-8")
    return {s: len(ls) for s, ls in lines.items()}
