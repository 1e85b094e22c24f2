"""Linguistic regions (Zhang et al. 2024): score parameters, pick regions, ablate, perturb, freeze.

Importance of a parameter θ for a language L is the first-order (Taylor) estimate of how much
the language-model loss on L's text changes when θ is zeroed: ``|θ · ∂loss/∂θ|``. It is
accumulated over a bounded token budget per language, streaming over batches, in fp32, with
no optimizer step; gradients are freed after every batch. By default only the matrices inside
the decoder blocks are scored (``include``/``exclude`` take fnmatch patterns over full
parameter names to change that).

Regions are sets of parameter entries, kept per matrix as sorted flat indices (a 1% region
of a 270M model is ~8 MB instead of a dense boolean copy of the model):

- ``core``:     the top-k fraction (default 1%) per matrix of importance summed over languages;
- ``mono:<L>``: L's own top-k minus every other language's top-k (disjoint across languages);
- ``bottom``:   the bottom-k per matrix of the summed importance (a control);
- ``random``:   k per matrix drawn uniformly with a fixed seed (a control);
- ``none``:     the empty region (no ablation).

A region set is saved as safetensors with metadata naming the model it was made for (a
checksum of parameter names/shapes/dtypes and one of the weights), the languages, tokens per
language and k; loading it against another model is an error.

Editing (``ablate``, ``edit``) happens inside a context manager that restores the edited
entries bit-for-bit on exit, also on an exception.
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import random as _random
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor
from tqdm.auto import tqdm

from hub.models import HubModel
from hub.perplexity import batch_nll, token_windows

FORMAT = "semantic-hub.regions/1"
CONTROLS = ("core", "bottom", "random")
MONO_PREFIX = "mono:"
NONE = "none"
# Modules whose output is added back into the residual stream (they *write* a hidden dimension
# through a row of their weight); every other matrix with an input of size d *reads* it.
WRITERS = ("*.o_proj.*", "*.down_proj.*", "*.c_proj.*", "*.out_proj.*", "*.fc2.*", "*.dense_4h_to_h.*",
           "*.wo.*")


# ----------------------------------------------------------------------------- parameters
def select_parameters(hm: HubModel, include: Sequence[str] | None = None, exclude: Sequence[str] = (),
                      matrices_only: bool = True) -> dict[str, nn.Parameter]:
    """The parameters to score, by full HF name, in model order.

    ``include=None`` means every parameter inside the decoder blocks (``hm.blocks``); otherwise
    fnmatch patterns over full names (``"*.mlp.*"``, ``"model.embed_tokens.weight"``).
    ``matrices_only`` keeps 2-D (and higher) tensors, dropping norms and biases.
    """
    in_blocks = {id(p) for p in hm.blocks.parameters()}
    out = {}
    for name, p in hm.model.named_parameters():
        chosen = (id(p) in in_blocks) if include is None else any(fnmatch.fnmatchcase(name, pat) for pat in include)
        if not chosen or any(fnmatch.fnmatchcase(name, pat) for pat in exclude):
            continue
        if matrices_only and p.ndim < 2:
            continue
        out[name] = p
    if not out:
        raise ValueError(f"no parameters of {hm.name} match include={list(include) if include else '<blocks>'} "
                         f"exclude={list(exclude)} (matrices_only={matrices_only}); parameter names look like "
                         f"{next(iter(n for n, _ in hm.model.named_parameters()))!r}")
    return out


def model_identity(hm: HubModel, params: Mapping[str, Tensor], weights: bool = True) -> dict:
    """Who a region belongs to: names/shapes/dtypes checksum and (optionally) a weights checksum."""
    h = hashlib.sha256()
    for name, p in params.items():
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype};".encode())
    ident = {"model": hm.name, "model_type": str(getattr(hm.model.config, "model_type", "?")),
             "n_params": int(sum(p.numel() for p in params.values())), "shapes_sha256": h.hexdigest()}
    if weights:
        ident["weights_sha256"] = weights_checksum(params)
    return ident


def weights_checksum(params: Mapping[str, Tensor]) -> str:
    """sha256 over the raw bytes of the parameters, in order (about 1 s per GB)."""
    h = hashlib.sha256()
    for p in params.values():
        t = p.detach().cpu().contiguous()
        h.update(t.view(torch.uint8).numpy() if t.numel() else b"")
    return h.hexdigest()


@contextlib.contextmanager
def grad_only(hm: HubModel, params: Mapping[str, nn.Parameter]) -> Iterator[None]:
    """Only ``params`` require grad inside (no weight grads for embeddings etc.); flags restored."""
    keep = {id(p) for p in params.values()}
    flags = [(p, p.requires_grad) for p in hm.model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(id(p) in keep)
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)
            p.grad = None


# ----------------------------------------------------------------------------- importance
@dataclass
class Importance:
    """Importance ``|θ ⊙ grad|`` summed over languages and (optionally) per language.

    Every tensor is fp32 and shaped like its parameter. Per-language scores cost 4 bytes per
    scored parameter and language (0.4 GB per language on Gemma-3-270m); they are only needed
    for monolingual regions.
    """

    total: dict[str, Tensor]  # param name -> [param shape], summed over languages
    per_language: dict[str, dict[str, Tensor]]  # lang -> param name -> [param shape]; {} if not kept
    tokens: dict[str, int]  # scored tokens per language
    identity: dict
    settings: dict = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return list(self.tokens)

    @property
    def names(self) -> list[str]:
        return list(self.total)


def accumulate_importance(
    hm: HubModel,
    texts: Mapping[str, str],
    tokens: int = 2048,
    window: int = 128,
    batch_size: int = 4,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    reduce: str = "dataset",
    keep_languages: bool = True,
    progress: bool = False,
) -> Importance:
    """Score parameters per language on up to ``tokens`` tokens of each text (lang -> text).

    ``keep_languages=False`` keeps only the sum over languages (enough for core, bottom and
    random regions; not for monolingual ones) and saves 4 bytes per parameter and language.

    ``reduce="dataset"`` (default): ``|θ ⊙ ∇ mean-token-loss over the language's text|``, the
    paper's Taylor estimate for the whole text (gradients summed in an fp32 buffer, then one
    product). ``reduce="batch"``: the token-weighted mean over batches of ``|θ ⊙ ∇ batch loss|``
    (an upper bound that also counts parameters whose gradient sign flips between batches).
    Both are per-token means, so languages with different token counts weigh the same.
    """
    if reduce not in ("dataset", "batch"):
        raise ValueError(f"reduce must be 'dataset' or 'batch', got {reduce!r}")
    if not texts:
        raise ValueError("texts: no languages given")
    params = select_parameters(hm, include, exclude)
    identity = model_identity(hm, params)
    wins = {lang: token_windows(hm, t, window, tokens, name=f"language {lang!r}") for lang, t in texts.items()}
    per_language, counts = {}, {}
    total_scores = {n: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for n, p in params.items()}
    was_training = hm.model.training
    hm.model.eval()
    try:
        with grad_only(hm, params), torch.enable_grad():
            for lang, ws in wins.items():
                total = sum(len(w) - 1 for w in ws)
                acc = {n: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for n, p in params.items()}
                chunks = [ws[i:i + batch_size] for i in range(0, len(ws), batch_size)]
                for chunk in tqdm(chunks, desc=f"importance {lang}", disable=not progress, leave=False):
                    nll, n = batch_nll(hm, chunk)
                    scale = total if reduce == "dataset" else float(n.sum())
                    (nll.sum() / scale).backward()
                    weight = float(n.sum()) / total
                    with torch.no_grad():
                        for name, p in params.items():
                            if p.grad is not None:
                                g = p.grad.float()
                                acc[name] += g if reduce == "dataset" else (g * p.float()).abs_().mul_(weight)
                            p.grad = None
                with torch.no_grad():
                    for name, p in params.items():
                        if reduce == "dataset":
                            acc[name].mul_(p.float()).abs_()
                        total_scores[name] += acc[name]
                if keep_languages:
                    per_language[lang] = acc
                counts[lang] = total
                del acc
    finally:
        hm.model.train(was_training)
    settings = {"window": window, "batch_size": batch_size, "reduce": reduce, "token_budget": tokens,
                "include": list(include) if include else None, "exclude": list(exclude)}
    return Importance(total_scores, per_language, counts, identity, settings)


# ----------------------------------------------------------------------------- masks
@dataclass
class Mask:
    """One region: sorted flat indices per parameter (``int64 [n]``), plus the shapes it fits."""

    name: str
    index: dict[str, Tensor]
    shapes: dict[str, tuple[int, ...]]
    identity: dict = field(default_factory=dict)

    def count(self) -> int:
        return int(sum(i.numel() for i in self.index.values()))

    def numel(self) -> int:
        return int(sum(_prod(s) for s in self.shapes.values()))

    def fraction(self) -> float:
        """Share of the scored parameters inside the region."""
        return self.count() / max(self.numel(), 1)

    def fractions(self) -> dict[str, float]:
        return {n: self.index[n].numel() / _prod(self.shapes[n]) for n in self.shapes}

    def dense(self, name: str) -> Tensor:
        """Boolean mask of one parameter, ``[param shape]``."""
        m = torch.zeros(_prod(self.shapes[name]), dtype=torch.bool)
        m[self.index[name]] = True
        return m.view(self.shapes[name])

    def restrict(self, name: str, keep: Callable[[str, Tensor, tuple[int, ...]], Tensor | None]) -> Mask:
        """A sub-region: ``keep(param, flat_index, shape) -> bool [n]`` (None drops the param)."""
        out = {}
        for n, idx in self.index.items():
            sel = keep(n, idx, self.shapes[n])
            out[n] = idx[sel] if sel is not None else idx[:0]
        return Mask(name, out, dict(self.shapes), dict(self.identity))


def _prod(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def check_k(k: float) -> float:
    """A region size must be a fraction in (0, 1]."""
    try:
        kf = float(k)
    except (TypeError, ValueError):
        raise ValueError(f"k must be a fraction in (0, 1], got {k!r}") from None
    if not 0.0 < kf <= 1.0:
        raise ValueError(f"k must be a fraction in (0, 1] (e.g. 0.01 for 1% per matrix), got {k!r}")
    return kf


def n_of(numel: int, k: float) -> int:
    """Entries per matrix for fraction k: round(k * numel), at least 1."""
    return min(numel, max(1, round(k * numel)))


def topk_index(score: Tensor, k: float, largest: bool = True) -> Tensor:
    """Sorted flat indices of the top (or bottom) ``k`` fraction of one matrix."""
    flat = score.reshape(-1)
    idx = torch.topk(flat, n_of(flat.numel(), k), largest=largest, sorted=False).indices
    return idx.sort().values


@dataclass
class RegionSet:
    """Named regions of one model plus the metadata that says which model and data made them."""

    masks: dict[str, Mask]
    meta: dict

    @property
    def names(self) -> list[str]:
        return [NONE, *self.masks]

    def mono(self) -> list[str]:
        return [n for n in self.masks if n.startswith(MONO_PREFIX)]

    def __contains__(self, name: str) -> bool:
        return name == NONE or name in self.masks

    def __getitem__(self, name: str) -> Mask:
        if name == NONE:
            any_mask = next(iter(self.masks.values()))
            return Mask(NONE, {n: i[:0] for n, i in any_mask.index.items()}, dict(any_mask.shapes),
                        dict(any_mask.identity))
        if name not in self.masks:
            raise KeyError(f"unknown region {name!r}; this region set has: {', '.join(self.names)}")
        return self.masks[name]

    def resolve(self, names: Sequence[str]) -> list[str]:
        """Expand ``mono`` to every monolingual region and check every name."""
        out = []
        for n in names:
            n = str(n)
            if n == "mono":
                out += self.mono()
            elif n in self:
                out.append(n)
            else:
                raise KeyError(f"unknown region {n!r}; known: {', '.join(self.names)} (or 'mono' for all "
                               f"monolingual regions)")
        return out

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write as safetensors (``<region>/<param>`` -> int64 indices), atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"{r}/{n}": idx.contiguous() for r, m in self.masks.items() for n, idx in m.index.items()}
        shapes = {n: list(s) for n, s in next(iter(self.masks.values())).shapes.items()}
        metadata = {"format": FORMAT, "meta": json.dumps(self.meta), "shapes": json.dumps(shapes),
                    "regions": json.dumps(list(self.masks))}
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"  # normal file mode
        try:
            save_file(tensors, str(tmp), metadata=metadata)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, hm: HubModel | None = None, check_weights: bool = True) -> RegionSet:
        """Read a saved region set; with ``hm``, check that it was made for this model."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"region file {path} does not exist")
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
            if md.get("format") != FORMAT:
                raise ValueError(f"{path} is not a semantic-hub region file (format {md.get('format')!r}, "
                                 f"expected {FORMAT!r})")
            meta = json.loads(md["meta"])
            shapes = {n: tuple(s) for n, s in json.loads(md["shapes"]).items()}
            masks = {}
            for r in json.loads(md["regions"]):
                masks[r] = Mask(r, {n: f.get_tensor(f"{r}/{n}") for n in shapes}, dict(shapes),
                                dict(meta["identity"]))
        rs = cls(masks, meta)
        if hm is not None:
            rs.check(hm, check_weights=check_weights)
        return rs

    def check(self, hm: HubModel, check_weights: bool = True) -> None:
        """Raise ValueError unless these regions fit ``hm`` (names, shapes, checksums)."""
        mask = next(iter(self.masks.values()))
        check_fits(hm, mask)
        ident = self.meta["identity"]
        if check_weights and "weights_sha256" in ident:
            params = _params_of(hm, mask)
            if weights_checksum(params) != ident["weights_sha256"]:
                raise ValueError(f"regions were made for model {ident['model']!r} with other weights (weights "
                                 f"checksum differs from {hm.name!r}); pass check_weights=False to use them on "
                                 f"a fine-tuned copy on purpose")


def build_regions(imp: Importance, k: float = 0.01, seed: int = 0, mono: bool = True) -> RegionSet:
    """Core, bottom, random and (if ``mono``) monolingual regions at fraction ``k`` per matrix."""
    k = check_k(k)
    if mono and not imp.per_language:
        raise ValueError("monolingual regions need per-language importance: accumulate with keep_languages=True "
                         "or build with mono=False")
    total = imp.total
    shapes = {n: tuple(t.shape) for n, t in total.items()}
    ident = imp.identity
    gen = torch.Generator().manual_seed(int(seed))
    core = {n: topk_index(t, k) for n, t in total.items()}
    bottom = {n: topk_index(t, k, largest=False) for n, t in total.items()}
    rand = {n: torch.randperm(t.numel(), generator=gen)[:n_of(t.numel(), k)].sort().values for n, t in total.items()}
    masks = {"core": Mask("core", core, shapes, ident), "bottom": Mask("bottom", bottom, shapes, ident),
             "random": Mask("random", rand, shapes, ident)}
    if mono:
        tops = {lang: {n: topk_index(s, k) for n, s in sc.items()} for lang, sc in imp.per_language.items()}
        own: dict[str, dict[str, Tensor]] = {lang: {} for lang in tops}
        for n, shape in shapes.items():
            hits = torch.zeros(_prod(shape), dtype=torch.int16)
            for lang in tops:
                hits[tops[lang][n]] += 1
            for lang in tops:
                idx = tops[lang][n]
                own[lang][n] = idx[hits[idx] == 1]  # in L's top-k and in nobody else's
        for lang in tops:
            masks[MONO_PREFIX + lang] = Mask(MONO_PREFIX + lang, own[lang], shapes, ident)
    meta = {"identity": ident, "languages": imp.languages, "tokens": imp.tokens, "k": k, "seed": int(seed),
            **imp.settings}
    return RegionSet(masks, meta)


# ----------------------------------------------------------------------------- editing
def _params_of(hm: HubModel, mask: Mask) -> dict[str, nn.Parameter]:
    named = dict(hm.model.named_parameters())
    return {n: named[n] for n in mask.shapes}


def check_fits(hm: HubModel, mask: Mask) -> None:
    """Raise ValueError unless every parameter of ``mask`` exists in ``hm`` with the same shape."""
    named = dict(hm.model.named_parameters())
    made_for = mask.identity.get("model", "?")
    for n, shape in mask.shapes.items():
        if n not in named:
            raise ValueError(f"region {mask.name!r} (made for model {made_for!r}) names parameter {n!r}, "
                             f"which {hm.name!r} does not have")
        if tuple(named[n].shape) != tuple(shape):
            raise ValueError(f"region {mask.name!r} (made for model {made_for!r}) expects {n} of shape "
                             f"{tuple(shape)}, but {hm.name!r} has {tuple(named[n].shape)}")
        idx = mask.index.get(n)
        if idx is None or idx.dtype != torch.int64 or (idx.numel() and int(idx.max()) >= _prod(shape)):
            raise ValueError(f"region {mask.name!r}: indices of {n} are missing, not int64 or out of range")
    sha = mask.identity.get("shapes_sha256")
    if sha is not None and model_identity(hm, _params_of(hm, mask), weights=False)["shapes_sha256"] != sha:
        raise ValueError(f"region {mask.name!r} was made for model {made_for!r}: the checksum of parameter "
                         f"names/shapes/dtypes differs from {hm.name!r}")


def _flat(p: Tensor) -> Tensor:
    if not p.is_contiguous():
        raise ValueError("cannot edit a non-contiguous parameter in place")
    return p.data.view(-1)


@contextlib.contextmanager
def edit(hm: HubModel, mask: Mask | None, fn: Callable[[Tensor], Tensor]) -> Iterator[Mask | None]:
    """Replace the masked entries ``v [n]`` by ``fn(v)`` inside; restore them bit-for-bit on exit."""
    if mask is None:
        yield None
        return
    check_fits(hm, mask)
    params = _params_of(hm, mask)
    saved: list[tuple[Tensor, Tensor, Tensor]] = []
    try:
        with torch.no_grad():
            for n, idx in mask.index.items():
                if idx.numel() == 0:
                    continue
                flat = _flat(params[n])
                idx = idx.to(flat.device)
                saved.append((flat, idx, flat[idx].clone()))
                flat[idx] = fn(flat[idx]).to(flat.dtype)
        yield mask
    finally:
        with torch.no_grad():
            for flat, idx, old in reversed(saved):
                flat[idx] = old


def ablate(hm: HubModel, mask: Mask | None) -> contextlib.AbstractContextManager:
    """Zero the region's parameters inside the ``with`` block (``None``: no-op)."""
    return edit(hm, mask, torch.zeros_like)


@contextlib.contextmanager
def restoring(hm: HubModel, names: Sequence[str]) -> Iterator[None]:
    """Snapshot whole parameters and copy them back bit-for-bit on exit (for training runs)."""
    named = dict(hm.model.named_parameters())
    saved = {n: named[n].detach().clone() for n in names}
    try:
        yield
    finally:
        with torch.no_grad():
            for n, v in saved.items():
                named[n].copy_(v)
                named[n].grad = None


# ----------------------------------------------------------------------------- dimensions
@torch.no_grad()
def outlier_dimensions(hm: HubModel, texts: Mapping[str, str], top: int = 3, window: int = 128,
                       tokens: int = 256, batch_size: int = 4) -> tuple[list[int], Tensor]:
    """Hidden dimensions with the largest mean |activation| over the residual stream.

    Mean over block outputs 1..L and all real tokens (BOS included: massive activations sit
    there) of up to ``tokens`` tokens per text. Returns the ``top`` dims and the score ``[d]``.
    """
    d = hm.d_model
    total, count = torch.zeros(d, dtype=torch.float64), 0
    for lang, text in texts.items():
        ws = token_windows(hm, text, window, tokens, name=f"language {lang!r}")
        for i in range(0, len(ws), batch_size):
            batch = hm.collate(ws[i:i + batch_size])
            m = batch.attention_mask.unsqueeze(-1).float()  # [b, s, 1]

            def add(h: Tensor, m=m) -> None:
                nonlocal total
                total += (h.float().abs() * m).sum((0, 1)).double().cpu()

            with hm.hooks({k: add for k in range(1, hm.n_layers + 1)}, stop_after=hm.n_layers):
                hm.forward_batch(batch)
            count += int(batch.attention_mask.sum()) * hm.n_layers
    score = (total / max(count, 1)).float()
    return score.topk(min(top, d)).indices.tolist(), score


def _io_axes(module: nn.Module, p: Tensor) -> tuple[int, int] | None:
    """(input axis, output axis) of a weight matrix, or None if it is not a linear map."""
    if p.ndim != 2:
        return None
    if type(module).__name__ == "Conv1D":  # GPT-2 style: weight [in, out]
        return 0, 1
    if isinstance(module, nn.Linear):
        return 1, 0
    return None


def dimension_mask(hm: HubModel, region: Mask, dim: int, writers: Sequence[str] = WRITERS) -> Mask:
    """The entries of ``region`` that read or write residual dimension ``dim``.

    A matrix that writes into the residual stream (``writers`` patterns: o_proj, down_proj...)
    contributes its output row ``dim``; any other matrix with input size d contributes its
    input column ``dim``. Matrices with neither side of size d contribute nothing.
    """
    d = hm.d_model
    if not 0 <= int(dim) < d:
        raise IndexError(f"dimension {dim} out of range for {hm.name} (d_model={d})")
    modules = dict(hm.model.named_modules())
    named = dict(hm.model.named_parameters())

    def keep(name: str, idx: Tensor, shape: tuple[int, ...]) -> Tensor | None:
        axes = _io_axes(modules.get(name.rsplit(".", 1)[0]), named[name])
        if axes is None:
            return None
        axis = axes[1] if any(fnmatch.fnmatchcase(name, w) for w in writers) else axes[0]
        if shape[axis] != d:
            return None
        coord = idx // shape[1] if axis == 0 else idx % shape[1]
        return coord == int(dim)

    return region.restrict(f"{region.name}@dim{dim}", keep)


def scale_by(factor: float) -> Callable[[Tensor], Tensor]:
    """An ``edit`` function multiplying the masked entries by ``factor`` (0 = ablation)."""
    return lambda v: v * factor


# ----------------------------------------------------------------------------- freezing
def continue_pretraining(
    hm: HubModel,
    windows: Sequence[Sequence[int]],
    steps: int,
    lr: float = 1e-4,
    batch_size: int = 4,
    freeze: Mask | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """AdamW on the LM loss for ``steps`` batches of ``windows``; returns the loss per step.

    Trains the parameters ``select_parameters(hm, include, exclude)`` (block matrices by
    default) and nothing else. With ``freeze``, the region's gradients are zeroed (grad *= ~mask)
    and its entries are copied back after every step, so weight decay cannot move them either:
    frozen entries end bit-for-bit unchanged. Changes the model in place: wrap the call in
    ``restoring(hm, names)`` to undo it. Dropout stays off (eval mode) for determinism.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not windows:
        raise ValueError("continue_pretraining: no training windows")
    params = select_parameters(hm, include, exclude)
    frozen: list[tuple[nn.Parameter, Tensor, Tensor]] = []
    if freeze is not None:
        check_fits(hm, freeze)
        named = dict(hm.model.named_parameters())
        for n, idx in freeze.index.items():
            if idx.numel() and n in params:
                frozen.append((named[n], idx, _flat(named[n])[idx].clone()))
    handles = []
    order = list(range(len(windows)))
    rng = _random.Random(seed)
    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=weight_decay)
    losses, pos = [], len(order)
    hm.model.eval()
    try:
        with grad_only(hm, params), torch.enable_grad():
            for p, idx, _ in frozen:  # grad *= ~mask, before AdamW sees it
                handles.append(p.register_hook(lambda g, idx=idx: g.reshape(-1).index_fill(0, idx, 0).view_as(g)))
            for _ in tqdm(range(steps), desc="continued pre-training", disable=not progress, leave=False):
                if pos + batch_size > len(order):
                    rng.shuffle(order)
                    pos = 0
                chunk = [list(windows[i]) for i in order[pos:pos + batch_size]]
                pos += batch_size
                nll, n = batch_nll(hm, chunk)
                loss = nll.sum() / n.sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for p, idx, old in frozen:
                        _flat(p)[idx] = old
                losses.append(float(loss.detach()))
    finally:
        for h in handles:
            h.remove()
        opt.zero_grad(set_to_none=True)
        del opt
    return losses
