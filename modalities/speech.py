"""Shared steps of the Whisper experiments: the speech set aligned across languages, encoder passes.

All three Whisper experiments read the same clips; ``encode`` memoises the encoder per clip
on the model, so running them in one job (experiment=whisper) encodes each clip once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from hydra.utils import instantiate
from torch import Tensor

from hub.context import RunContext
from hub.errors import UserError
from hub.models.whisper import SAMPLE_RATE, WhisperHub
from modalities.audio import AudioAdapter, SpeechSet


@dataclass
class Speech:
    """Clips aligned across languages: ``rows[lang][i]`` is sentence ``ids[i]`` spoken in lang."""

    set: SpeechSet
    ids: list[str]
    rows: dict[str, list[int]]
    adapter: AudioAdapter

    def waves(self, lang: str) -> list[np.ndarray]:
        return [self.set.clips[r].wave for r in self.rows[lang]]

    def texts(self, lang: str) -> list[str]:
        return [self.set.table.at[r, "text"] for r in self.rows[lang]]


def model(ctx: RunContext) -> WhisperHub:
    kind = ctx.cfg.model.get("kind", "causal_lm")
    if kind != "whisper":
        raise UserError(f"{ctx.cfg.experiment.name} needs a Whisper model (model.kind: whisper), got "
                         f"model={ctx.cfg.model.name} (kind {kind}); try model=whisper_base or model=tiny_whisper")
    return ctx.model


def speech(ctx: RunContext) -> Speech:
    """The configured speech set, restricted to sentences spoken in every language."""
    adapter: AudioAdapter = instantiate(ctx.cfg.modality)
    if not isinstance(adapter, AudioAdapter):
        raise UserError(f"the Whisper experiments need modality=audio, got {type(adapter).__name__}")
    s = adapter.load()
    langs = adapter.languages
    ids = s.aligned(langs, adapter.kind)
    if adapter.max_items:
        ids = ids[: adapter.max_items]
    if len(ids) < 4:
        raise UserError(f"only {len(ids)} items are spoken in all of {langs} (drops: {dict(s.drops)}); "
                         "at least 4 are needed")
    rows = {lang: [s.by_id(lang, adapter.kind)[i] for i in ids] for lang in langs}
    return Speech(s, ids, rows, adapter)


def encode(ctx: RunContext, wh: WhisperHub, sp: Speech, lang: str) -> tuple[Tensor, Tensor]:
    """Encoder output ``[n, 1500, d]`` and per-layer speech-frame means ``[n, layer, d]``."""
    return wh.encode_memo(sp.waves(lang), batch_size=int(ctx.cfg.experiment.get("encoder_batch", 4)),
                          progress=bool(ctx.cfg.progress))


def silence(wh: WhisperHub, seconds: float = 1.0) -> Tensor:
    """The encoder output for digital silence ``[1, 1500, d]`` (the 'no audio' condition)."""
    hidden, _ = wh.encode_memo([np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)])
    return hidden


def per_item(hidden: Tensor) -> list[dict]:
    """Encoder outputs as per-item ``extra`` for HubModel.capture."""
    return [{"encoder_hidden_states": hidden[i:i + 1]} for i in range(hidden.shape[0])]


def stack(states: list[Tensor]) -> Tensor:
    return torch.stack(states) if states else torch.empty(0)
