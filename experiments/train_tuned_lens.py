"""Train a tuned lens (Belrose et al. 2023) and measure it against the logit lens.

Method. Running text (the shipped corpora of every configured language, or the user's text
file) is split into a training part and a held-out part (the last ``eval_fraction`` of each
text). Both are cut into BOS-prefixed windows (hub.perplexity.token_windows) within a token
budget, split evenly over the languages; the residual states of every layer at every position
but the BOS come from one capture (``HubModel.capture``). One affine translator per layer
(``h + A_k h + b_k``, identity at the start) is trained to minimise KL(final || lens_k) summed
over layers (hub/lens/tuning.py: bounded vocabulary by default, ``fit.top_k=0`` for the full
one). The held-out full-vocabulary KL per layer is reported for the logit lens (the untrained
lens) and the tuned lens; with ``compare_full`` a second lens is trained with the full objective
on the same data and steps, so the bounded objective is judged by the full KL it reaches.
The lens is saved as ``tuned_lens.safetensors`` with the model's name and weights checksum.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from hub.context import RunContext
from hub.errors import UserError, UserFileError
from hub.lens.tuned import TunedLens
from hub.lens.tuning import FitConfig, final_targets, fit, held_out_kl
from hub.perplexity import token_windows
from hub.plots import integer_layer_axis, line_styles, save_fig
from hub.stats import mean_ci
from hub.steps.regions import load_texts, split_text


def _texts(cfg) -> dict[str, str]:
    e = cfg.experiment
    if e.get("text_file"):
        p = Path(str(e.text_file)).expanduser()
        if not p.is_file():
            raise UserFileError(f"experiment.text_file={p}: no such file; expected a UTF-8 text file to train on")
        return {"text": p.read_text(encoding="utf-8")}
    return load_texts(cfg)


def _windows(hm, texts: dict[str, str], budget: int, window: int) -> tuple[list[list[int]], dict[str, int]]:
    """Windows of every text, ``budget`` tokens split evenly over the texts (windows shortened to
    fit a small share)."""
    per = max(1, budget // len(texts))
    win = min(window, per + 1)
    wins, counts = [], {}
    for name, t in texts.items():
        w = token_windows(hm, t, win, per, name=f"text {name!r}")
        wins += w
        counts[name] = sum(len(x) - 1 for x in w)
    return wins, counts


def _states(hm, wins: list[list[int]], batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``states [N, L+1, d]`` at every position but the first (BOS), and the tokens there ``[N]``."""
    cache, hm.cache = hm.cache, None  # one-use states, hundreds of MB: not for the activation cache
    try:
        got = hm.capture(wins, layers="all", positions="all", batch_size=batch_size)  # list of [L+1, seq, d]
    finally:
        hm.cache = cache
    states = torch.cat([s[:, 1:].transpose(0, 1) for s in got])
    tokens = torch.tensor([t for w in wins for t in w[1:]])
    return states, tokens


def _kl_rows(kl: np.ndarray, layers: list[int], lens: str) -> list[dict]:
    m, lo, hi = mean_ci(kl, bounds=(0.0, np.inf))
    return [{"metric": "held_out_kl", "lens": lens, "layer": k, "value": m[j], "ci_low": lo[j], "ci_high": hi[j],
             "n": kl.shape[0]} for j, k in enumerate(layers)]


def _figure(df: pd.DataFrame, path: Path, title: str) -> Path:
    """KL per layer, one line per lens (the project's line styles), 95% CI shaded, log scale:
    the logit lens's early-layer KL is orders of magnitude above the rest."""
    import matplotlib.pyplot as plt

    styles = line_styles(df["lens"].unique(), order=["logit", "tuned", "tuned (full objective)"])
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, st in styles.items():
        d = df[df["lens"] == name].sort_values("layer")
        ax.plot(d["layer"], d["value"], label=f"{name} lens", color=st["color"], ls=st["ls"], marker=st["marker"],
                markersize=3.5, lw=1.6)
        ax.fill_between(d["layer"], d["ci_low"].clip(lower=1e-6), d["ci_high"], color=st["color"], alpha=0.15, lw=0)
    ax.set_yscale("log")
    integer_layer_axis(ax)
    ax.set(xlabel="layer", ylabel="KL (nats/token, log scale)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_fig(fig, path)


def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg, ctx.model
    e = cfg.experiment
    L = hm.n_layers
    layers = [k for k in hm.check_layers(e.layers) if k < L]
    if not layers:
        raise UserError(f"experiment.layers={e.layers}: no layer below {L} (layer {L} is the model's output, "
                        "read as is)")
    fit_cfg = FitConfig(**OmegaConf.to_container(e.fit, resolve=True))
    parts = {name: split_text(t, float(e.eval_fraction), name=f"text {name!r}") for name, t in _texts(cfg).items()}
    t0 = time.time()
    tr_w, tr_n = _windows(hm, {k: v[0] for k, v in parts.items()}, int(e.tokens), int(e.window))
    ev_w, ev_n = _windows(hm, {k: v[1] for k, v in parts.items()}, int(e.eval_tokens), int(e.window))
    tr, tr_tok = _states(hm, tr_w, int(e.batch_size))
    ev, _ = _states(hm, ev_w, int(e.batch_size))
    capture_s = time.time() - t0
    ev_layers, ev_final = ev[:, layers], ev[:, L]
    t0 = time.time()
    targets = final_targets(hm, tr[:, L], fit_cfg.top_k)
    lens = TunedLens.identity(hm, apply_norm=bool(cfg.lens_norm))
    losses = fit(lens, tr[:, layers], layers, targets, fit_cfg, input_ids=tr_tok, log_every=int(e.log_every))
    fit_s = time.time() - t0
    t0 = time.time()
    kl_logit = held_out_kl(TunedLens.identity(hm, apply_norm=bool(cfg.lens_norm)), ev_layers, layers, ev_final)
    kl_tuned = held_out_kl(lens, ev_layers, layers, ev_final)
    eval_s = time.time() - t0
    rows = _kl_rows(kl_logit, layers, "logit") + _kl_rows(kl_tuned, layers, "tuned")
    full = None
    if e.compare_full:
        t0 = time.time()
        full_cfg = FitConfig(**{**fit_cfg.__dict__, "top_k": 0})
        full = TunedLens.identity(hm, apply_norm=bool(cfg.lens_norm))
        fit(full, tr[:, layers], layers, final_targets(hm, tr[:, L], 0), full_cfg, log_every=int(e.log_every))
        full_s = time.time() - t0
        kl_full = held_out_kl(full, ev_layers, layers, ev_final)
        rows += _kl_rows(kl_full, layers, "tuned (full objective)")
    n_tr = int(tr.shape[0])
    del tr, targets
    path = lens.save(ctx.out / str(e.lens_file), {
        "train_tokens": n_tr, "train_texts": ",".join(tr_n), "steps": fit_cfg.steps, "top_k": fit_cfg.top_k,
        "negatives": fit_cfg.negatives, "apply_norm": bool(cfg.lens_norm),
        "layers_trained": ",".join(map(str, layers))})
    df = ctx.add(pd.DataFrame(rows), task="tuned_lens")
    fig = _figure(df, ctx.out / "tuned_lens_kl.png", f"held-out KL(final ‖ lens), {hm.name}")
    lines = [
        f"Training: {n_tr} tokens ({', '.join(f'{k} {v}' for k, v in tr_n.items())}), {fit_cfg.steps} steps of "
        f"{fit_cfg.batch_tokens} tokens x {len(layers)} layers, {fit_cfg.optimizer} lr {fit_cfg.lr}; objective: "
        + (f"bounded (top-{fit_cfg.top_k} final tokens + remainder, {fit_cfg.negatives} tail samples per step)"
           if fit_cfg.top_k > 0 else "full vocabulary")
        + f". Loss {np.mean(losses[:5]):.3f} -> {np.mean(losses[-5:]):.3f} (sum over layers).",
        f"Held out: {kl_logit.shape[0]} tokens ({', '.join(f'{k} {v}' for k, v in ev_n.items())}); "
        "KL is the full-vocabulary KL(final ‖ lens) in nats per token.",
        f"Times: capture {capture_s:.0f} s, fit {fit_s:.0f} s, held-out KL {eval_s:.0f} s"
        + (f", full-objective fit {full_s:.0f} s" if full is not None else "") + ".",
        f"Mean over layers: logit lens {kl_logit.mean():.3f}, tuned lens {kl_tuned.mean():.3f} nats"
        + (f", tuned lens with the full objective {kl_full.mean():.3f} nats" if full is not None else "") + ".",
        f"The tuned lens's held-out KL is lower than the logit lens's at "
        f"{int((kl_tuned.mean(0) < kl_logit.mean(0)).sum())} of {len(layers)} layers. Lens file: {path.name} "
        f"(model {hm.name}, weights checksum {lens.meta['weights_checksum'][:12]}…).",
    ]
    table = pd.DataFrame({"layer": layers, "logit lens KL": kl_logit.mean(0), "tuned lens KL": kl_tuned.mean(0)})
    if full is not None:
        table["tuned (full objective) KL"] = kl_full.mean(0)
        gap = kl_tuned.mean() - kl_full.mean()
        lines.append(f"Bounded vs full objective: mean held-out KL {kl_tuned.mean():.4f} vs {kl_full.mean():.4f} nats "
                     f"(difference {gap:+.4f}, {gap / max(kl_full.mean(), 1e-12):+.1%}); the logit lens is "
                     f"{kl_logit.mean():.4f}.")
    ctx.report.meta["lens_file"] = str(path)
    ctx.report.section("Tuned lens: held-out KL per layer", "\n\n".join(lines), figures=[fig], table=table,
                       floatfmt=".4f")
    return df
