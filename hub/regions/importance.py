"""Importance of parameter entries for a language: ``|θ · ∂loss/∂θ|`` over a token budget.

The first-order (Taylor) estimate of how much the language-model loss on a language's text
changes when θ is zeroed, accumulated over a bounded token budget per language, streaming over
batches, in fp32, with no optimizer step; gradients are freed after every batch. By default only
the matrices inside the decoder blocks are scored (``include``/``exclude``: fnmatch patterns).
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch import Tensor
from tqdm.auto import tqdm

from hub.models import HubModel
from hub.perplexity import batch_nll, token_windows


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


def region_identity(hm: HubModel, params: Mapping[str, Tensor], weights: bool = True) -> dict:
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
    identity = region_identity(hm, params)
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
