"""The tuned lens (Belrose et al. 2023): one affine translator per layer before the logit lens.

A state ``h`` at layer k is read as ``h + A_k h + b_k`` through the shared final norm +
unembedding (hub.lens.base). ``A [L, d, d]`` (``A_k`` in ``nn.Linear`` convention: out x in,
so ``A_k h = A_k @ h``) and ``b [L, d]`` hold one translator per layer k = 0..L-1 (layer k
= the output of block k, 0 = the embedding output); the last layer L is the model's own
output and is always read unchanged, as in the reference implementation. At initialisation
``A = 0, b = 0``, so the lens is the logit lens. The transform of ``[..., layer, d]`` states is
one batched einsum over the layer axis.

Files.
- ``tuned_lens.safetensors`` (ours; written by ``experiment=train_tuned_lens``): tensors ``A``,
  ``b``; string metadata naming the model (name, model_type, layers, width, vocabulary,
  dtype) and the checksum of its weights (``weights_checksum``: hub.cache.state_dict_digest).
  A file made for another model, or for other weights, is refused (one line).
- The tuned-lens library's published format: a directory with ``config.json``
  (``d_model``, ``num_hidden_layers``, ``bias``, ``base_model_name_or_path``) and
  ``params.pt``, a ``state_dict`` of ``num_hidden_layers`` residual ``nn.Linear`` translators
  (keys ``{i}.weight [d, d]``, ``{i}.bias [d]``; ``layer_translators.`` prefixed keys of older
  whole-lens checkpoints are accepted). Translator i reads HF ``hidden_states[i]``, our layer
  i, and its weight is the residual ``A_i`` (the library applies ``h + Linear(h)``). Those files
  carry no weights checksum: the width and layer count are checked, the model name is reported.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from hub.cache import state_dict_digest
from hub.errors import UserError, UserFileError
from hub.lens.base import LayerSpec, Lens, register_lens
from hub.models import HubModel

log = logging.getLogger(__name__)
FORMAT = "semantic-hub tuned lens v1"
TRAIN_HINT = "train one with `semantic-hub experiment=train_tuned_lens model=<this model>`"


class Translators(nn.Module):
    """``A [L, d, d]``, ``b [L, d]`` (zeros: the identity); ``forward`` translates ``[..., layer, d]``."""

    def __init__(self, n_layers: int, d_model: int):
        super().__init__()
        self.A = nn.Parameter(torch.zeros(n_layers, d_model, d_model))
        self.b = nn.Parameter(torch.zeros(n_layers, d_model))

    def forward(self, states: Tensor, layers: list[int]) -> Tensor:
        """``states [..., layer, d]`` at ``layers`` -> ``h + A_k h + b_k`` (layer L unchanged)."""
        L = self.A.shape[0]
        idx = torch.tensor([min(k, L) for k in layers])
        A = torch.cat([self.A, self.A.new_zeros(1, *self.A.shape[1:])])[idx]  # [layer, d, d]; row L = 0
        b = torch.cat([self.b, self.b.new_zeros(1, self.b.shape[1])])[idx]  # [layer, d]
        h = states.to(A.dtype)
        return h + torch.einsum("...li,loi->...lo", h, A) + b


def model_identity(hm: HubModel) -> dict[str, str]:
    """Who a lens belongs to: name, type, shape facts, dtype and the weights checksum (the
    activation cache's :func:`hub.cache.state_dict_digest`: every parameter and buffer's bytes)."""
    return {"model": hm.name, "model_type": str(getattr(hm.model.config, "model_type", "?")),
            "n_layers": str(hm.n_layers), "d_model": str(hm.d_model), "vocab_size": str(hm.vocab_size),
            "dtype": str(hm.dtype).removeprefix("torch."), "weights_checksum": state_dict_digest(hm.model)}


@register_lens("tuned")
class TunedLens(Lens):
    """Read ``[..., layer, d]`` states at ``layers`` as ``h + A_k h + b_k`` through the logit lens.

    ``TunedLens(hm, path=...)`` loads a trained lens (ours: a ``.safetensors`` file; the
    tuned-lens library's: a directory with ``config.json`` + ``params.pt``);
    ``TunedLens.identity(hm)`` (or ``identity=True``) is the untrained lens (equal to the logit lens), the start of
    training. ``check_weights`` (default on) compares our file's weights checksum with ``hm``.
    """

    needs_layers = True

    def __init__(self, hm: HubModel, path: str | os.PathLike | None = None, check_weights: bool = True,
                 apply_norm: bool = True, identity: bool = False, **kw):
        super().__init__(hm, apply_norm=apply_norm, **kw)
        self.translators = Translators(hm.n_layers, hm.d_model)
        self.translators.requires_grad_(False)
        self.meta: dict[str, str] = {}
        if path is None:
            if not identity:
                raise UserError(f"lens.tuned.path is not set: the tuned lens needs a trained lens file for "
                                f"{hm.name}; {TRAIN_HINT} and pass lens.tuned.path=<run dir>/tuned_lens.safetensors")
        else:
            self.load(path, check_weights=check_weights)

    @classmethod
    def identity(cls, hm: HubModel, apply_norm: bool = True, **kw) -> TunedLens:
        """The untrained lens (``A = 0, b = 0``): the logit lens, and the start of training."""
        return cls(hm, path=None, apply_norm=apply_norm, identity=True, **kw)

    @property
    def A(self) -> Tensor:
        return self.translators.A

    @property
    def b(self) -> Tensor:
        return self.translators.b

    def transform(self, states: Tensor, layers: LayerSpec = None) -> Tensor:
        """``[..., layer, d]`` -> ``[..., layer, d]`` fp32 (one batched einsum over the layer axis)."""
        layer_list = self.hm.check_layers(list(layers))
        with torch.no_grad():
            return self.translators(states.float(), layer_list)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, meta: dict[str, str] | None = None) -> Path:
        """Write ``tuned_lens.safetensors`` (``A``, ``b``, metadata: model identity + ``meta``), atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {"format": FORMAT, **model_identity(self.hm), **{k: str(v) for k, v in (meta or {}).items()}}
        tmp = path.with_name(path.name + ".tmp")
        save_file({"A": self.A.detach().contiguous(), "b": self.b.detach().contiguous()}, str(tmp), metadata=info)
        os.replace(tmp, path)
        self.meta = info
        return path

    def load(self, path: str | os.PathLike, check_weights: bool = True) -> None:
        """Load our ``.safetensors`` file or a tuned-lens directory (``config.json`` + ``params.pt``)."""
        p = Path(path).expanduser()
        if not p.exists():
            raise UserFileError(f"lens.tuned.path={p}: no such file; expected a tuned_lens.safetensors ({TRAIN_HINT}) "
                                "or a tuned-lens directory with config.json + params.pt")
        A, b, meta = (_read_published(p, self.hm) if p.is_dir() else _read_ours(p, self.hm, check_weights))
        with torch.no_grad():
            self.translators.A.copy_(A)
            self.translators.b.copy_(b)
        self.meta = meta


def _read_ours(p: Path, hm: HubModel, check_weights: bool) -> tuple[Tensor, Tensor, dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(p), "pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - a foreign file is a user error, said in one line
        raise UserError(f"lens.tuned.path={p} is not a safetensors file ({e}); expected a tuned_lens.safetensors "
                        "or a tuned-lens directory (config.json + params.pt)") from None
    if meta.get("format") != FORMAT or set(tensors) != {"A", "b"}:
        raise UserError(f"lens.tuned.path={p} is not a tuned lens file (format {meta.get('format')!r}, tensors "
                        f"{sorted(tensors)}); expected one written by experiment=train_tuned_lens")
    made = f"model {meta.get('model')!r} ({meta.get('n_layers')} layers, d={meta.get('d_model')})"
    if (meta.get("n_layers"), meta.get("d_model"), meta.get("vocab_size")) != \
            (str(hm.n_layers), str(hm.d_model), str(hm.vocab_size)):
        raise UserError(f"lens.tuned.path={p} was trained for {made}, not for {hm.name!r} ({hm.n_layers} layers, "
                        f"d={hm.d_model}); {TRAIN_HINT}")
    if check_weights:
        ident = model_identity(hm)
        if meta.get("weights_checksum") != ident["weights_checksum"]:
            raise UserError(f"lens.tuned.path={p} was trained for {made}, {meta.get('dtype')} weights checksum "
                            f"{str(meta.get('weights_checksum'))[:12]}…, but {hm.name!r} ({ident['dtype']}) has "
                            "weights "
                            f"{ident['weights_checksum'][:12]}…: a lens for other weights; {TRAIN_HINT}")
    return tensors["A"].float(), tensors["b"].float(), meta


def _read_published(p: Path, hm: HubModel) -> tuple[Tensor, Tensor, dict]:
    """A tuned-lens library directory -> (A [L, d, d], b [L, d], config as metadata)."""
    cfg_p, par_p = p / "config.json", p / "params.pt"
    for f in (cfg_p, par_p):
        if not f.is_file():
            raise UserFileError(f"lens.tuned.path={p}: a tuned-lens directory needs {f.name}; not found")
    try:
        cfg = json.loads(cfg_p.read_text(encoding="utf-8"))
        d, L = int(cfg["d_model"]), int(cfg["num_hidden_layers"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"lens.tuned.path={p}: config.json lacks a valid d_model / num_hidden_layers ({e})") from None
    if (d, L) != (hm.d_model, hm.n_layers):
        raise UserError(f"lens.tuned.path={p} was trained for {cfg.get('base_model_name_or_path')!r} ({L} layers, "
                        f"d={d}), not for {hm.name!r} ({hm.n_layers} layers, d={hm.d_model}); {TRAIN_HINT}")
    try:
        state = torch.load(par_p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable checkpoint is a user error
        raise UserError(f"lens.tuned.path={p}: params.pt is not a readable torch state_dict ({e})") from None
    state = {k.removeprefix("layer_translators."): v for k, v in state.items()}
    A, b = torch.zeros(L, d, d), torch.zeros(L, d)
    for i in range(L):
        w = state.get(f"{i}.weight")
        if w is None or tuple(w.shape) != (d, d):
            raise UserError(f"lens.tuned.path={p}: params.pt has no translator {i}.weight of shape [{d}, {d}] "
                            f"(got {None if w is None else tuple(w.shape)}); expected {L} translators")
        A[i] = w.float()
        if f"{i}.bias" in state:
            b[i] = state[f"{i}.bias"].float()
        elif cfg.get("bias", True):
            raise UserError(f"lens.tuned.path={p}: config.json says bias=true but params.pt has no {i}.bias")
    extra = sorted(k for k in state if k.split(".")[0].isdigit() and int(k.split(".")[0]) >= L)
    if extra:
        raise UserError(f"lens.tuned.path={p}: params.pt has translators beyond the {L} layers ({extra[:3]})")
    base = str(cfg.get("base_model_name_or_path", "?"))
    own = str(getattr(hm.model.config, "name_or_path", "") or hm.name)
    if base.rstrip("/").split("/")[-1].lower() not in own.lower():
        log.warning("tuned lens %s was published for %r; loading it on %r (same shape)", p, base, hm.name)
    return A, b, {"format": "tuned-lens (config.json + params.pt)", "model": base}


def save_published(lens: TunedLens, path: str | os.PathLike, base_model: str | None = None) -> Path:
    """Write ``lens`` in the tuned-lens library's format (``config.json`` + ``params.pt``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {}
    for i in range(lens.A.shape[0]):
        state[f"{i}.weight"] = lens.A[i].detach().clone()
        state[f"{i}.bias"] = lens.b[i].detach().clone()
    torch.save(state, path / "params.pt")
    cfg = {"base_model_name_or_path": base_model or lens.hm.name, "d_model": lens.hm.d_model,
           "num_hidden_layers": lens.hm.n_layers, "bias": True, "lens_type": "linear_tuned_lens"}
    (path / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return path
