"""Perplexity of a causal LM on held-out text, in fixed-length token windows, with a CI.

Why windows: every window has the same number of tokens, so batches need no padding, each
window is one independent sample for the confidence interval, and a language's score does not
depend on how its text happens to be split into lines.

Windowing (shared with importance accumulation in ``hub.regions``): the text is tokenized once
without special tokens into a stream; the stream is cut into consecutive, non-overlapping
chunks of ``window - 1`` tokens (``window`` when the tokenizer has no BOS) and each chunk gets
the BOS token in front, so every window is a ``window``-token model input whose first scored
token is predicted from BOS alone. A remainder shorter than a chunk is dropped, unless the whole
stream is shorter than one chunk (then it is a single, shorter window). ``max_tokens`` caps the
number of stream tokens used (whole windows only, taken from the start of the text).

Perplexity = exp(mean token NLL), the mean over all scored tokens (= the mean of the window
means, windows being equal). The interval is a t-interval over the window mean NLLs,
exponentiated; it is NaN with a single window. Log-probabilities are computed in fp32.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hub.models import HubModel


@dataclass(frozen=True)
class Perplexity:
    """One language's perplexity; ``nll`` are the per-window mean NLLs (nats/token)."""

    value: float
    ci_low: float
    ci_high: float
    n_windows: int
    n_tokens: int  # scored tokens
    nll: tuple[float, ...]

    def row(self) -> dict:
        """Tidy-result fields (``n`` = windows, the CI's unit)."""
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "n": self.n_windows, "tokens": self.n_tokens, "nll": sum(self.nll) / len(self.nll)}


def token_windows(hm: HubModel, text: str, window: int = 128, max_tokens: int | None = None,
                  name: str = "text") -> list[list[int]]:
    """Cut ``text`` into BOS-prefixed windows of ``window`` tokens (see module docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name}: empty text; expected non-empty running text to score")
    if window < 2:
        raise ValueError(f"window must be at least 2 tokens, got {window}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"{name}: max_tokens must be positive or None, got {max_tokens}")
    stream = hm.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not stream:
        raise ValueError(f"{name}: text produced no tokens")
    bos = getattr(hm.tokenizer, "bos_token_id", None)
    prefix = [bos] if bos is not None else []
    chunk = window - len(prefix)
    if max_tokens is not None:
        stream = stream[:max(max_tokens, 1)]
    n_full = len(stream) // chunk
    if n_full == 0:  # shorter than one window: a single short window (needs >= 1 scored token)
        if len(prefix) + len(stream) < 2:
            raise ValueError(f"{name}: only {len(stream)} token(s); need at least 2 tokens to score")
        return [prefix + stream]
    return [prefix + stream[i * chunk:(i + 1) * chunk] for i in range(n_full)]


def window_nll(hm: HubModel, windows: list[list[int]], batch_size: int = 4, streamed: bool = True) -> Tensor:
    """Mean next-token NLL (nats) of each window, fp32, no grad. ``-> [n_windows]``.

    ``streamed``: the forward stops after the last block and the log-probabilities come from
    :meth:`LogitLens.target_logprob` (vocabulary blocks, no ``[batch, seq, vocab]`` logits):
    the same numbers as the model's own logits, faster and in less memory; ``False`` uses the
    model's full forward (:func:`batch_nll`).
    """
    out = []
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            nll, n = (batch_nll_streamed if streamed else batch_nll)(hm, windows[i:i + batch_size])
            out.append((nll.sum(1) / n).cpu())
    return torch.cat(out)


@torch.no_grad()
def batch_nll_streamed(hm: HubModel, windows: list[list[int]]) -> tuple[Tensor, Tensor]:
    """:func:`batch_nll` without the model's logits: the last block's output through the lens
    (final norm + unembedding in vocabulary blocks). No grad."""
    from hub.lens import LogitLens

    batch = hm.collate(windows)
    got: dict[str, Tensor] = {}

    def keep(h: Tensor) -> None:
        got["h"] = h

    with hm.hooks({hm.n_layers: keep}, stop_after=hm.n_layers):
        hm.forward_batch(batch)
    h = got["h"]  # [b, s, d], the last block's raw output
    logp_target = LogitLens(hm).target_logprob(h[:, :-1], batch.input_ids[:, 1:]).to(h.device)  # [b, s-1]
    valid = (batch.attention_mask[:, :-1] * batch.attention_mask[:, 1:]).to(logp_target.dtype)
    return -logp_target * valid, valid.sum(1)


def batch_nll(hm: HubModel, windows: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Token NLLs ``[batch, seq-1]`` (0 on padding) and scored-token counts ``[batch]``.

    Differentiable (the caller decides on grad). Logits are cast to fp32 before the softmax.
    """
    batch = hm.collate(windows)
    logits = hm.forward_batch(batch).logits  # [b, s, V]
    logp_target = -F.cross_entropy(logits[:, :-1].float().flatten(0, 1), batch.input_ids[:, 1:].flatten(),
                                   reduction="none").view(len(windows), -1)  # [b, s-1]
    valid = (batch.attention_mask[:, :-1] * batch.attention_mask[:, 1:]).to(logp_target.dtype)
    return -logp_target * valid, valid.sum(1)


def summarize(nll: Tensor, n_tokens: int) -> Perplexity:
    """Perplexity and t-interval from per-window mean NLLs ``[n_windows]``."""
    from scipy import stats

    x = nll.double()
    n = len(x)
    mean = float(x.mean())
    if n > 1:
        half = float(stats.t.ppf(0.975, n - 1)) * float(x.std(unbiased=True)) / math.sqrt(n)
        lo, hi = _exp(mean - half), _exp(mean + half)
    else:
        lo = hi = float("nan")
    return Perplexity(_exp(mean), lo, hi, n, n_tokens, tuple(float(v) for v in x))


def _exp(v: float) -> float:
    """exp, saturating at 1e300 (a broken model's NLL can exceed 700 nats; ``nll`` stays exact)."""
    return math.exp(min(v, 690.0))


def perplexity(hm: HubModel, text: str, window: int = 128, max_tokens: int | None = 1024,
               batch_size: int = 4, name: str = "text", streamed: bool = True) -> Perplexity:
    """Perplexity of ``hm`` on ``text`` (first ``max_tokens`` tokens, whole windows)."""
    wins = token_windows(hm, text, window, max_tokens, name=name)
    nll = window_nll(hm, wins, batch_size, streamed=streamed)
    return summarize(nll, sum(len(w) - 1 for w in wins))


def perplexities(hm: HubModel, texts: Mapping[str, str], window: int = 128, max_tokens: int | None = 1024,
                 batch_size: int = 4, streamed: bool = True) -> dict[str, Perplexity]:
    """Perplexity per language of ``texts`` (lang -> held-out text)."""
    return {lang: perplexity(hm, t, window, max_tokens, batch_size, name=f"language {lang!r}", streamed=streamed)
            for lang, t in texts.items()}


@torch.no_grad()
def continuation_nll(hm: HubModel, prompts: list[list[int]], continuations: list[list[int]],
                     batch_size: int = 8) -> Tensor:
    """Mean NLL (nats/token, fp32) of each continuation given its prompt. ``-> [n]``, NaN where
    the continuation is empty.

    Items run as left-padded batches (sorted by length, so little padding); the forward stops
    after the last block and the unembedding runs on the continuation positions only (the
    prompt's next-token distributions are never computed).
    """
    if len(prompts) != len(continuations):
        raise ValueError(f"continuation_nll: {len(prompts)} prompts but {len(continuations)} continuations")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("continuation_nll: an empty prompt; every continuation needs a prompt token before it")
    from hub.lens import LogitLens

    lens = LogitLens(hm)
    out = torch.full((len(prompts),), math.nan)
    todo = sorted((i for i, c in enumerate(continuations) if len(c)),
                  key=lambda i: len(prompts[i]) + len(continuations[i]))
    for j in range(0, len(todo), batch_size):
        idx = todo[j:j + batch_size]
        conts = [list(continuations[i]) for i in idx]
        batch = hm.collate([list(prompts[i]) + c for i, c in zip(idx, conts)])
        got: dict[str, Tensor] = {}
        with hm.hooks({hm.n_layers: lambda h: got.__setitem__("h", h)}, stop_after=hm.n_layers):
            hm.forward_batch(batch)
        S, L = batch.input_ids.shape[1], max(len(c) for c in conts)
        h = got["h"][:, S - 1 - L:S - 1]  # [b, L, d]: the states that predict the last L tokens
        logp = lens.target_logprob(h, batch.input_ids[:, S - L:].cpu())  # [b, L]
        n = torch.tensor([len(c) for c in conts])
        own = torch.arange(L)[None, :] >= (L - n)[:, None]  # [b, L]: this item's continuation tokens
        out[idx] = -(logp * own).sum(1) / n
    return out
