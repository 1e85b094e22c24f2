"""Converters from a checksummed source file to a Hugging Face model directory, by catalog
``format``: ``gguf`` (transformers' GGUF loader, saved as fp32 safetensors) and ``ct2-whisper``."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .catalog import CatalogEntry
from .errors import StoreError

log = logging.getLogger(__name__)


Converter = Callable[[CatalogEntry, Path, Path], None]
"""``converter(entry, source_dir, out_dir)``: source_dir holds ``entry.file`` (checksummed)
and ``entry.source_files``; write a Hugging Face model directory into out_dir."""


def _tidy_config(config: Any) -> None:
    """Drop GGUF loading leftovers and float32 noise from a config loaded from GGUF."""
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            with contextlib.suppress(AttributeError):
                delattr(config, attr)
    for attr in ("rms_norm_eps", "layer_norm_eps"):
        v = getattr(config, attr, None)
        if isinstance(v, float):
            setattr(config, attr, float(f"{v:.6g}"))


def convert_gguf_causal_lm(entry: CatalogEntry, src: Path, out: Path) -> None:
    """GGUF -> fp32 safetensors via transformers' GGUF loader.

    ``save_pretrained`` refuses a GGUF-loaded model, so the de-quantized state dict is loaded
    into a fresh model built from the same config, which is saved; the saved directory is then
    reloaded and its logits compared with the GGUF-loaded model's.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    log.info("%s: loading tokenizer from GGUF (this takes a while)", entry.name)
    tok = AutoTokenizer.from_pretrained(str(src), gguf_file=entry.file)
    log.info("%s: de-quantizing GGUF weights", entry.name)
    gm = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=entry.file, dtype=torch.float32)
    gm.eval()
    log.info("%s: GGUF loaded in %.0f s", entry.name, time.perf_counter() - t0)

    config = gm.config
    _tidy_config(config)
    config.dtype = torch.float32
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = gm.state_dict()
    result = fresh.load_state_dict(state, strict=False)
    tied = set(getattr(fresh, "_tied_weights_keys", None) or {})
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise StoreError(
            f"{entry.name}: GGUF state dict does not fit {type(fresh).__name__}: "
            f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    fresh.eval()
    if getattr(gm, "generation_config", None) is not None:
        fresh.generation_config = gm.generation_config
    fresh.save_pretrained(str(out))
    tok.save_pretrained(str(out))

    # Self-check: the saved model reproduces the GGUF model.
    ids = tok("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    reloaded = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    with torch.no_grad():
        a, b = gm(ids).logits, reloaded(ids).logits
    err = (a - b).abs().max().item()
    if not err < 1e-3:
        raise StoreError(f"{entry.name}: saved model differs from the GGUF model (max |dlogit|={err:.3g})")
    log.info("%s: converted and checked in %.0f s", entry.name, time.perf_counter() - t0)


def convert_ct2_whisper(entry: CatalogEntry, src: Path, out: Path) -> None:
    """CTranslate2 (faster-whisper) -> WhisperForConditionalGeneration + WhisperProcessor."""
    from . import ct2_whisper

    t0 = time.perf_counter()
    ct2_whisper.convert_ct2_whisper(src, out, model_file=entry.file)
    log.info("%s: converted in %.0f s", entry.name, time.perf_counter() - t0)


CONVERTERS: dict[str, Converter] = {
    "gguf": convert_gguf_causal_lm,
    "ct2-whisper": convert_ct2_whisper,
}
