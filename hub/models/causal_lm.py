"""Model kind ``causal_lm``: any Hugging Face ``AutoModelForCausalLM`` as a HubModel."""
from __future__ import annotations

from hub.models.model import HubModel, as_dtype


def load(path: str, dtype: str = "float32", device: str = "cpu", attn_implementation: str | None = None,
         **_: object) -> HubModel:
    """A causal LM and its tokenizer from a store name, local directory or hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hub.store import resolve

    where = resolve(path)
    kw: dict = {"dtype": as_dtype(dtype)}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(where, **kw).to(device)
    tok = AutoTokenizer.from_pretrained(where)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return HubModel(model, tok, name=str(path))
