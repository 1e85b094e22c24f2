"""Model kind ``causal_lm``: any Hugging Face ``AutoModelForCausalLM`` as a HubModel.

Big models: ``dtype`` (bfloat16/float16) sets the dtype the forward runs in; ``device_map``
(``auto``, ``balanced``, ``balanced_low_0``, ``sequential`` or an explicit ``{module: device}``
map, where a device may be ``cpu`` or ``disk``), ``max_memory`` and ``offload_folder`` go to
``from_pretrained`` (accelerate places the blocks and offloads what does not fit). With a
``device_map`` the model is left where accelerate put it (no ``.to(device)``).
"""
from __future__ import annotations

from collections.abc import Mapping

from hub.errors import UserError
from hub.models.model import HubModel, as_dtype

DEVICE_MAP_NAMES = ("auto", "balanced", "balanced_low_0", "sequential")


def placement_kwargs(device_map: object = None, max_memory: Mapping | None = None,
                     offload_folder: str | None = None) -> dict:
    """``from_pretrained`` keyword arguments for an accelerate placement; a UserError for a bad one."""
    if device_map is None:
        if max_memory or offload_folder:
            raise UserError("model.max_memory / model.offload_folder need model.device_map "
                            f"(one of {', '.join(DEVICE_MAP_NAMES)} or an explicit module -> device map)")
        return {}
    if isinstance(device_map, str):
        if device_map not in DEVICE_MAP_NAMES:
            raise UserError(f"model.device_map={device_map!r}: expected one of {', '.join(DEVICE_MAP_NAMES)} "
                            "or an explicit module -> device map")
        dm: object = device_map
    elif isinstance(device_map, Mapping):
        dm = {str(k): (v if isinstance(v, int) else str(v)) for k, v in device_map.items()}
        if "disk" in dm.values() and not offload_folder:
            raise UserError("model.device_map puts modules on 'disk': set model.offload_folder to a directory")
    else:
        raise UserError(f"model.device_map={device_map!r}: expected a name or a module -> device map")
    kw: dict = {"device_map": dm}
    if max_memory:
        kw["max_memory"] = {(k if isinstance(k, int) or not str(k).isdigit() else int(k)): str(v)
                            for k, v in dict(max_memory).items()}
    if offload_folder:
        kw["offload_folder"] = str(offload_folder)
    return kw


def load(path: str, dtype: str = "float32", device: str = "cpu", attn_implementation: str | None = None,
         device_map: object = None, max_memory: Mapping | None = None, offload_folder: str | None = None,
         **_: object) -> HubModel:
    """A causal LM and its tokenizer from a store name, local directory or hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hub.store import resolve

    where = resolve(path)
    kw: dict = {"dtype": as_dtype(dtype), **placement_kwargs(device_map, max_memory, offload_folder)}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(where, **kw)
    if device_map is None:
        model = model.to(device)
    tok = AutoTokenizer.from_pretrained(where)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return HubModel(model, tok, name=str(path))  # states_dtype is set by hub.models.kinds.load_model


def check_states_dtype(value: object) -> str:
    """``model.states_dtype``: ``float32`` (default) or ``model`` (keep the forward's dtype)."""
    if str(value) not in ("float32", "model"):
        raise UserError(f"model.states_dtype={value!r}: expected float32 or model")
    return str(value)
