"""The patchscope lens (Ghandeharioun et al. 2024): let the model itself decode a state.

A state ``h`` from layer k of some prompt is written (replace, scale 1) into the last
position of a target "identity" prompt (``cat -> cat; 1135 -> 1135; hello -> hello; ?``) at
layer k' (``target_layer="same"``: k' = k; an int: one fixed k' for every k); the model then
runs on, and its next-token distribution at that position is the reading. Unlike the logit
lens, the layers after k' translate the state, so a state not yet in the unembedding's basis
can still be read.

It fits the :class:`~hub.lens.base.Lens` interface as a ``transform``: ``h`` at layer k ->
the target prompt's raw last-layer state at its last position with ``h`` patched in. The
shared final norm + unembedding (softcap included) of that state is exactly the model's
next-token distribution, so the streamed readout is reused unchanged (``apply_norm`` must be
on). The write follows :class:`hub.intervene.Intervention` ``mode="replace"``, ``scale=1``
at ``positions="last"``, via the same layer hooks (``HubModel.hooks``); one batched forward
carries one row per (item, layer) pair, so the layers of an item share a forward (rows are
chunked by ``rows_per_forward``). The target prompt has no padding (every row is the same
prompt), so the last position is the last column.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hub.errors import UserError
from hub.lens.base import LayerSpec, Lens, register_lens
from hub.models import HubModel
from hub.patching import last_token_writer

DEFAULT_TARGET = "cat -> cat; 1135 -> 1135; hello -> hello; ?"


@register_lens("patchscope")
class PatchscopeLens(Lens):
    """Decode ``[..., layer, d]`` states by patching them into an identity prompt at layer k'.

    ``target_prompt``: the prompt whose last position receives the state; ``target_layer``:
    ``"same"`` (k' = the state's own layer k) or an int (a fixed k' in 0..L);
    ``rows_per_forward``: (item, layer) rows per batched forward of the target prompt.
    """

    needs_layers = True

    def __init__(self, hm: HubModel, target_prompt: str = DEFAULT_TARGET, target_layer: int | str = "same",
                 rows_per_forward: int = 64, apply_norm: bool = True, **kw):
        if not apply_norm:
            raise ValueError("the patchscope lens reads the model's own next-token distribution, which includes "
                             "the final norm: apply_norm=false (lens_norm=false) does not apply to it")
        super().__init__(hm, apply_norm=True, **kw)
        if target_layer != "same":
            if isinstance(target_layer, bool) or not isinstance(target_layer, int):
                raise UserError(f"patchscope target_layer={target_layer!r}: expected 'same' or a layer index "
                                 f"0..{hm.n_layers}")
            hm.check_layers([target_layer])
        if rows_per_forward < 1:
            raise UserError(f"patchscope rows_per_forward={rows_per_forward}: expected >= 1")
        self.target_prompt = target_prompt
        self.target_layer = target_layer
        self.rows_per_forward = int(rows_per_forward)
        self.target_ids = hm.tokenize([target_prompt])[0]

    def _write_layers(self, layers: list[int]) -> list[int]:
        """k' for each state layer k."""
        return list(layers) if self.target_layer == "same" else [int(self.target_layer)] * len(layers)

    @torch.no_grad()
    def transform(self, states: Tensor, layers: LayerSpec = None) -> Tensor:
        """``[..., layer, d]`` states at ``layers`` -> ``[..., layer, d]`` raw last-layer states
        of the target prompt (last position) with each state written in at its k'."""
        layer_list = self.hm.check_layers(list(layers))
        shape = states.shape
        L = len(layer_list)
        flat = states.reshape(-1, L, shape[-1]).reshape(-1, shape[-1])  # [items*layer, d], layer fastest
        writes = torch.tensor(self._write_layers(layer_list)).repeat(flat.shape[0] // L)  # [rows]
        out = torch.empty(flat.shape, dtype=torch.float32)
        for i in range(0, flat.shape[0], self.rows_per_forward):
            j = min(i + self.rows_per_forward, flat.shape[0])
            out[i:j] = self._patched_final(flat[i:j], writes[i:j])
        return out.reshape(shape)

    def _patched_final(self, rows: Tensor, writes: Tensor) -> Tensor:
        """One forward of the target prompt, batch ``len(rows)``: row r gets ``rows[r]`` written at
        the last position of layer ``writes[r]``; returns the raw layer-L state there ``[rows, d]``."""
        hm, top = self.hm, self.hm.n_layers
        batch = hm.collate([self.target_ids] * len(rows))
        got: dict[str, Tensor] = {}

        def at(k: int):
            sel = torch.nonzero(writes == k).flatten().to(hm.device)  # rows written at layer k

            write = last_token_writer(sel, rows[sel.cpu()]) if len(sel) else None

            def fn(h: Tensor) -> Tensor | None:  # h [rows, seq, d]
                new = write(h) if write is not None else None
                if k == top:
                    got["h"] = (new if new is not None else h)[:, -1].float().cpu()
                return new
            return fn

        ks = sorted(set(writes.tolist()) | {top})
        with hm.hooks({k: at(k) for k in ks}, stop_after=top):
            hm.forward_batch(batch)
        return got["h"]
