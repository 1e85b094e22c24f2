"""The model core: one wrapper over any Hugging Face LM that captures the residual stream.

Layer convention (everywhere in semantic-hub): layer 0 = embedding output (the input of
block 1), layer k = output of block k, k = 1..L. Captured states are *raw* block outputs:
layer L is never passed through the final norm (HF's last ``hidden_states`` entry is).

Capture runs the top-level model with forward hooks on the blocks that are read and stops
the forward right after the deepest one, so the unembedding (two thirds of the cost of a
small-model forward with a 262k vocabulary) never runs, and deeper blocks neither.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch import Tensor
from tqdm.auto import tqdm

from hub.errors import UserError
from hub.layers import select_layers
from hub.models.families import Family, family_for, get_attr
from hub.positions import PositionSpec, make_reader


class _StopForward(Exception):
    """Raised by the hook of the deepest requested block to end the forward early."""


@dataclass
class Batch:
    """A left-padded batch of token ids. ``[batch, seq]`` each."""

    input_ids: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    lengths: list[int]
    bos_offsets: list[int]
    extra: dict = field(default_factory=dict)


@dataclass
class HubModel:
    """An HF model plus what the framework needs to know about it.

    Precision: the forward runs in the weights' dtype (``model.dtype``: float32, bfloat16,
    float16). The upcast to fp32 happens in :meth:`capture`'s hook (``states_dtype``, fp32 by
    default, or ``"model"`` to keep bf16/fp16 states); the lens upcasts after the final norm
    (hub.lens.base ``Lens.normed``) and the comparator on entry (hub.metrics.inputs.as_states).
    Placement: with an accelerate ``device_map`` blocks may sit on several devices or be
    offloaded; :attr:`device` is the input embedding's device and states come back on the CPU.
    """

    model: nn.Module
    tokenizer: object
    name: str = "model"
    family: Family | None = None
    # optional activation cache (hub.cache.ActivationCache): consulted by capture when set
    cache: object | None = field(default=None, repr=False, compare=False)
    # dtype capture hands back (and caches) by default: "float32", or "model" = the weights' dtype
    states_dtype: str = "float32"

    def __post_init__(self) -> None:
        self.family = self.family or family_for(self.model)
        self.model.eval()
        body = get_attr(self.model, self.family.body)
        self.body = body
        self.blocks: nn.ModuleList = get_attr(body, self.family.blocks)
        self.final_norm: nn.Module = get_attr(body, self.family.norm)
        self.embed: nn.Module = get_attr(body, self.family.embed)
        self.unembed: nn.Module = get_attr(self.model, self.family.unembed)
        cfg = self.model.config
        self.text_config = getattr(cfg, self.family.text_config_attr) if self.family.text_config_attr else cfg
        if hasattr(self.text_config, "get_text_config"):
            self.text_config = self.text_config.get_text_config()
        if self.tokenizer is not None and getattr(self.tokenizer, "padding_side", None) != "left":
            self.tokenizer.padding_side = "left"

    # ------------------------------------------------------------------ facts
    @property
    def n_layers(self) -> int:
        """Number of blocks L; valid layer indices are 0..L."""
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        return self.unembed.weight.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.unembed.weight.shape[0]

    @property
    def softcap(self) -> float | None:
        return getattr(self.text_config, "final_logit_softcapping", None)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the input embedding's device (with an accelerate ``device_map`` the
        blocks may sit on other devices; hooks and interventions follow each block's tensors)."""
        w = self.embed.weight
        if w.device.type == "meta":  # embedding offloaded by accelerate: its hook runs on the map's device
            hook = getattr(self.embed, "_hf_hook", None)
            dev = getattr(hook, "execution_device", None)
            return torch.device(dev if dev is not None else "cpu")
        return w.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the forward runs in (the input embedding's weights)."""
        return self.embed.weight.dtype

    def resolve_states_dtype(self, dtype: torch.dtype | None = None) -> torch.dtype:
        """The dtype capture returns: ``dtype`` if given, else ``states_dtype`` (fp32 by default)."""
        if dtype is not None:
            return dtype
        return self.dtype if self.states_dtype == "model" else as_dtype(self.states_dtype)

    def check_layers(self, layers: Sequence[int] | str | None) -> list[int]:
        """Normalise a layer selection to a list; 'all'/None = 0..L (hub.layers.select_layers)."""
        return select_layers(layers, self.n_layers, self.name)

    # ------------------------------------------------------------ tokenising
    def tokenize(self, texts: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
        """Token ids per item (with the tokenizer's special tokens); empty input is an error."""
        if isinstance(texts, str):
            raise TypeError("expected a list of strings (or token-id lists), got a single string")
        out = []
        for i, t in enumerate(texts):
            if isinstance(t, str):
                if not t.strip():
                    raise UserError(f"input {i} is an empty prompt: expected non-empty text")
                ids = self.tokenizer(t, add_special_tokens=True)["input_ids"]
            else:
                ids = list(t)
                if not ids:
                    raise UserError(f"input {i} is an empty token sequence")
            out.append(ids)
        return out

    def collate(self, ids: Sequence[Sequence[int]]) -> Batch:
        """Left-pad token id lists; position ids count real tokens only."""
        pad_id = self.tokenizer.pad_token_id if self.tokenizer is not None else None
        if pad_id is None:
            pad_id = getattr(self.tokenizer, "eos_token_id", 0) or 0
        lengths = [len(x) for x in ids]
        S = max(lengths)
        input_ids = torch.full((len(ids), S), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), S), dtype=torch.long)
        for b, x in enumerate(ids):
            input_ids[b, S - len(x):] = torch.tensor(x, dtype=torch.long)
            mask[b, S - len(x):] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        bos = getattr(self.tokenizer, "bos_token_id", None)
        bos_offsets = [int(bos is not None and len(x) > 1 and x[0] == bos) for x in ids]
        dev = self.device
        return Batch(input_ids.to(dev), mask.to(dev), pos.to(dev), lengths, bos_offsets)

    # --------------------------------------------------------------- forward
    def forward_batch(self, batch: Batch, **kwargs) -> object:
        """Run the top-level model on a batch (hooks decide what is kept)."""
        return self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                          position_ids=batch.position_ids, use_cache=False, **batch.extra, **kwargs)

    @contextlib.contextmanager
    def hooks(self, fns: dict[int, Callable[[Tensor], Tensor | None]], stop_after: int | None = None
              ) -> Iterator[None]:
        """Attach ``fn(h [batch, seq, d]) -> new h or None`` at layer k (0 = embedding output).

        Hooks are removed on exit, also on an exception. With ``stop_after=k`` the forward
        ends (silently) right after layer k is computed.
        """
        handles = []

        def post(k: int, fn):
            def hook(_mod, _args, out):
                h = out[0] if isinstance(out, tuple) else out
                new = fn(h) if fn is not None else None
                if new is not None:
                    out = (new, *out[1:]) if isinstance(out, tuple) else new
                if stop_after == k:
                    raise _StopForward
                return out
            return hook

        def pre(fn):
            def hook(_mod, args, kwargs):
                if args:
                    h = args[0]
                    new = fn(h) if fn is not None else None
                    if new is not None:
                        args = (new, *args[1:])
                else:
                    h = kwargs["hidden_states"]
                    new = fn(h) if fn is not None else None
                    if new is not None:
                        kwargs = {**kwargs, "hidden_states": new}
                if stop_after == 0:
                    raise _StopForward
                return args, kwargs
            return hook

        wanted = dict(fns)
        if stop_after is not None:
            wanted.setdefault(stop_after, None)
        try:
            for k, fn in wanted.items():
                if k == 0:
                    handles.append(self.blocks[0].register_forward_pre_hook(pre(fn), with_kwargs=True))
                else:
                    handles.append(self.blocks[k - 1].register_forward_hook(post(k, fn)))
            try:
                yield
            except _StopForward:
                pass
        finally:
            for h in handles:
                h.remove()

    # --------------------------------------------------------------- capture
    @torch.no_grad()
    def capture(
        self,
        inputs: Sequence[str] | Sequence[Sequence[int]],
        layers: Sequence[int] | str | None = "all",
        positions: PositionSpec = "last",
        spans: Sequence[tuple[int, int]] | None = None,
        batch_size: int = 16,
        dtype: torch.dtype | None = None,
        extra: Sequence[dict] | None = None,
        progress: bool = False,
    ) -> Tensor | list[Tensor]:
        """Residual-stream states at ``layers`` and ``positions``, on the CPU.

        The forward runs in the model's dtype (``model.dtype``); each state is cast in the hook,
        on its block's device, to ``dtype`` (default: ``states_dtype``, fp32 unless set to
        ``"model"``) and then moved to the CPU, so a bf16 or sharded model hands back fp32 CPU
        states, and that is what the activation cache stores.

        Returns ``[n, layer, d]`` for last/mean, ``[n, layer, p, d]`` for explicit indices,
        and for ``"all"`` a list of ``[layer, seq_i, d]`` (padding removed).
        Items are sorted by length for batching; results do not depend on batch composition.
        """
        layer_list = self.check_layers(layers)
        dtype = self.resolve_states_dtype(dtype)
        ids = self.tokenize(inputs)
        if spans is not None and len(spans) != len(ids):
            raise ValueError(f"spans: got {len(spans)} spans for {len(ids)} inputs")
        if isinstance(positions, (list, tuple)) and positions and not isinstance(positions[0], int) \
                and len(positions) != len(ids):
            raise ValueError(f"positions: got {len(positions)} index lists for {len(ids)} inputs")
        cache_key = None
        if self.cache is not None:  # activation cache (hub.cache): same inputs + model -> stored states
            cache_key = self.cache.key(self, ids, layer_list, positions, spans, dtype, extra)
            hit = self.cache.get(cache_key) if cache_key is not None else None
            if hit is not None:
                return hit
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results: list = [None] * len(ids)
        stop = max(layer_list)
        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for chunk in tqdm(chunks, desc=f"capture {self.name}", disable=not progress, leave=False):
            batch = self.collate([ids[i] for i in chunk])
            if extra is not None:
                batch.extra = _stack_extra([extra[i] for i in chunk])
            pos_b = positions
            if isinstance(positions, (list, tuple)) and positions and not isinstance(positions[0], int):
                pos_b = [positions[i] for i in chunk]
            reader = make_reader(pos_b, batch.lengths, batch.input_ids.shape[1],
                                 spans=[spans[i] for i in chunk] if spans is not None else None,
                                 bos_offsets=batch.bos_offsets)
            got: dict[int, Tensor] = {}

            def keep(k):
                def fn(h):  # h [b, seq, d] on its block's device (several devices under a device_map)
                    if reader.weights is not None:
                        reader.weights = reader.weights.to(h.device)
                    if reader.index is not None:
                        reader.index = reader.index.to(h.device)
                    x = h.to(dtype) if reader.mode == "mean" else h  # pool in the states' dtype
                    got[k] = reader(x).to(dtype).cpu()
                return fn

            with self.hooks({k: keep(k) for k in layer_list}, stop_after=stop):
                self.forward_batch(batch)
            stacked = torch.stack([got[k] for k in layer_list], dim=1)  # [b, layer, ...]
            for j, i in enumerate(chunk):
                if positions == "all":
                    L = batch.lengths[j]
                    results[i] = stacked[j, :, stacked.shape[2] - L:].cpu()
                else:
                    results[i] = stacked[j].cpu()
        out = results if positions == "all" else torch.stack(results)
        if cache_key is not None:
            self.cache.put(cache_key, out, model=self.name)
        return out


def _stack_extra(items: list[dict]) -> dict:
    """Concatenate per-item extra model inputs (e.g. pixel_values) along the batch axis."""
    keys = items[0].keys()
    return {k: torch.cat([it[k] for it in items]) for k in keys}


def as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"bfloat16"`` -> ``torch.bfloat16``; a clear error for a name torch does not have."""
    if isinstance(dtype, torch.dtype):
        return dtype
    got = getattr(torch, str(dtype), None)
    if not isinstance(got, torch.dtype):
        raise UserError(f"dtype {dtype!r} is not a torch dtype: expected e.g. float32, bfloat16, float16")
    return got
