"""The model-kind table: ``model.kind`` -> the sibling module that loads that kind.

Each kind is one file in hub/models/ with a ``load(path, dtype, device, **options)`` function
(the way TransformerLens v3 picks an adapter file from a name -> adapter table). A ``tiny:<name>``
path builds a random tiny model of that kind instead (hub/models/tiny.py), for tests and smoke
runs. Adding a kind = one module with ``load`` + one line here + a tiny builder + one test.
"""
from __future__ import annotations

import importlib

import torch

from hub.errors import UserError
from hub.models.clip import ClipModel
from hub.models.causal_lm import check_states_dtype
from hub.models.model import HubModel, as_dtype

KINDS: dict[str, str] = {
    "causal_lm": "hub.models.causal_lm",  # AutoModelForCausalLM -> HubModel
    "vlm": "hub.models.vlm",              # image-text model + processor -> MultimodalHubModel
    "audio_lm": "hub.models.audio_lm",    # Qwen2-Audio + processor -> AudioLMHub
    "whisper": "hub.models.whisper",      # Whisper + feature extractor -> WhisperHub (decoder as LM)
    "clip": "hub.models.clip",            # open_clip dual encoder -> ClipModel
}
TINY_PREFIX = "tiny:"
PLACEMENT = ("device_map", "max_memory", "offload_folder")  # accelerate placement: causal_lm only


def load_model(path: str, kind: str = "causal_lm", dtype: str = "float32", device: str = "cpu",
               name: str | None = None, **options: object) -> HubModel | ClipModel:
    """Load a model of ``kind`` (store name, directory, hub id, or ``tiny:<name>``).

    ``options`` go to the kind's loader (``pretrained`` for clip, ``attn_implementation``,
    and for causal_lm ``device_map`` / ``max_memory`` / ``offload_folder`` / ``states_dtype``).
    """
    if kind not in KINDS:
        raise UserError(f"model.kind={kind!r}: expected one of {', '.join(KINDS)}")
    placed = [k for k in PLACEMENT if options.get(k) is not None]
    if placed and kind != "causal_lm":
        raise UserError(f"model.{placed[0]} is supported for model.kind=causal_lm only (got kind {kind!r}); "
                        "expected it unset for this model")
    states_dtype = options.pop("states_dtype", None)
    path = str(path)
    if path.startswith(TINY_PREFIX):
        from hub.models.tiny import build_tiny

        model = build_tiny(kind, path[len(TINY_PREFIX):])
        if isinstance(model, HubModel) and as_dtype(dtype) != torch.float32:  # a tiny model honours model.dtype
            model.model.to(as_dtype(dtype))
    else:
        model = importlib.import_module(KINDS[kind]).load(path, dtype=dtype, device=device, **options)
    if isinstance(model, HubModel) and states_dtype is not None:  # every HubModel kind
        model.states_dtype = check_states_dtype(states_dtype)
    if name:
        model.name = name
    return model
