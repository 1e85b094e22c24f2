"""Language vectors (mean residual of a language minus the mean over languages) and language ID.

``language_vectors`` reads every real token of each language's text windows (BOS excluded) at
the given layers, averages per language, and subtracts the mean over languages, so
``v(B) - v(A)`` is the difference of the two languages' mean states (Schut et al. 2025 and
earlier language-steering work). ``LanguageIdentifier`` wraps lingua, a detector made for
short text whose models ship inside the package (no download at run time).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from hub.errors import UserError
from hub.models.model import HubModel


@torch.no_grad()
def language_vectors(hm: HubModel, windows: Mapping[str, Sequence[Sequence[int]]], layers: Sequence[int],
                     batch_size: int = 4) -> dict[str, Tensor]:
    """Per language, ``[len(layers), d]`` fp32: its mean token state minus the mean over languages.

    ``windows[lang]`` are token-id windows of that language's text. Each language's mean is over
    all its real tokens except BOS, so languages weigh equally whatever their token counts.
    """
    if len(windows) < 2:
        raise ValueError(f"language_vectors: {len(windows)} language(s) given: expected at least 2")
    layers = hm.check_layers(list(layers))
    means = {}
    for lang, wins in windows.items():
        if not wins:
            raise ValueError(f"language_vectors: language {lang!r} has no text windows")
        states = hm.capture(list(wins), layers=layers, positions="all", batch_size=batch_size)  # list of [layer, s, d]
        bos = getattr(hm.tokenizer, "bos_token_id", None)
        toks = [s[:, int(bos is not None and len(w) > 1 and w[0] == bos):] for s, w in zip(states, wins)]
        means[lang] = torch.cat(toks, dim=1).float().mean(1)  # [layer, d]
    grand = torch.stack(list(means.values())).mean(0)
    return {lang: m - grand for lang, m in means.items()}


class LanguageIdentifier:
    """ISO 639-1 code of a short text among ``languages`` (lingua), or None when undecided."""

    def __init__(self, languages: Sequence[str]) -> None:
        try:
            from lingua import IsoCode639_1, LanguageDetectorBuilder
        except ImportError as e:
            raise ImportError("language identification needs lingua: pip install lingua-language-detector") from e
        codes = []
        for lang in languages:
            code = getattr(IsoCode639_1, str(lang).upper(), None)
            if code is None:
                raise UserError(f"language {lang!r} is not an ISO 639-1 code lingua knows: expected codes such as en, de, zh")
            codes.append(code)
        if len(codes) < 2:
            raise ValueError("LanguageIdentifier needs at least 2 candidate languages")
        self._detector = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()

    def __call__(self, text: str) -> str | None:
        lang = self._detector.detect_language_of(text) if text and text.strip() else None
        return lang.iso_code_639_1.name.lower() if lang is not None else None

    def many(self, texts: Sequence[str]) -> list[str | None]:
        return [self(t) for t in texts]
