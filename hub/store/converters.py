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

    ``save_pretrained`` refuses a GGUF-loaded model, so its de-quantized tensors are assigned
    (not copied) to a model built on the meta device from the same config, which is saved. The
    saved directory is then reloaded and its logits compared with the GGUF-loaded model's.
    Peak memory stays near one fp32 copy of the model (plus the GGUF loader's own peak).
    """
    import gc

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    log.info("%s: loading tokenizer from GGUF (this takes a while)", entry.name)
    tok = AutoTokenizer.from_pretrained(str(src), gguf_file=entry.file)
    log.info("%s: de-quantizing GGUF weights", entry.name)
    gm = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=entry.file, dtype=torch.float32)
    gm.eval()
    log.info("%s: GGUF loaded in %.0f s", entry.name, time.perf_counter() - t0)
    ids = tok("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    with torch.no_grad():
        want = gm(ids).logits  # [1, seq, vocab], the reference for the self-check

    config = gm.config
    _tidy_config(config)
    config.dtype = torch.float32
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = fresh.load_state_dict(gm.state_dict(), strict=False, assign=True)
    tied = set(getattr(fresh, "_tied_weights_keys", None) or {})
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise StoreError(
            f"{entry.name}: GGUF state dict does not fit {type(fresh).__name__}: "
            f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    on_meta = [k for k, v in fresh.state_dict().items() if v.is_meta]
    if on_meta:
        raise StoreError(f"{entry.name}: no GGUF tensor for {on_meta[:5]}")
    fresh.eval()
    if getattr(gm, "generation_config", None) is not None:
        fresh.generation_config = gm.generation_config
    fresh.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    del fresh, gm
    gc.collect()

    # Self-check: the saved model reproduces the GGUF model.
    reloaded = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    with torch.no_grad():
        got = reloaded(ids).logits
    err = (want - got).abs().max().item()
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
