"""Causal methods vs a plain forward (issue: causal tests of the hub).

- Patching k = 0..L for one target prompt (hub.patching.patch_last_token, batched over k) vs
  one plain forward of that prompt: the ratio is the number of forwards it is worth. Target:
  at most L+1. Two rows: the default path (the prompt's prefix once, then L+1 one-token
  steps on copies of its KV cache) and ``prefix_cache=False`` (L+1 full rows).
- LAPE firing counts (hub.neurons.firing_counts: hooks on every MLP activation, counts only) vs
  the same windows through the body alone (stop after the last block, no hooks). Printed as
  seconds per 1k tokens and their ratio.
- steer_language's cells of one layer (de->fr: native, English-anchored and random vectors at
  ``--steer-scales``, plus the unsteered scale 0; language vectors from the sentences of 5
  languages): one greedy ``generate_with`` per cell (the old path) vs all cells as one per-item
  intervention in chunks of ``--steer-batch`` rows. Each timed once (they take minutes); the
  token ids of both must be equal, and the row says how many rows differ. ``--steer-prompts 0``
  skips it.

Times are the best of ``--repeats`` in *CPU seconds of this process* (``time.process_time``;
run with one thread), with wall seconds beside them: on a shared machine the wall time counts
other jobs' turns on the cores, the CPU time mostly does not.
"""
from __future__ import annotations

import argparse

import torch

import os
import time
from pathlib import Path

from benchmarks.common import peak_rss_mb, print_table


def best_cpu(fn, n: int = 3, warmup: int = 1) -> tuple[float, float]:
    """(best CPU seconds, wall seconds of that call) over ``n`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    best = (float("inf"), float("inf"))
    for _ in range(n):
        c, w = time.process_time(), time.perf_counter()
        fn()
        best = min(best, (time.process_time() - c, time.perf_counter() - w))
    return best


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3_270m")
    ap.add_argument("--tokens", type=int, default=1024, help="LAPE: tokens counted")
    ap.add_argument("--prompt-tokens", type=int, default=48, help="patching: target prompt length")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steer-prompts", type=int, default=16, help="steering: prompts per cell (0: skip)")
    ap.add_argument("--steer-tokens", type=int, default=16, help="steering: greedy tokens per row")
    ap.add_argument("--steer-scales", default="1,2,4", help="steering: nonzero scales")
    ap.add_argument("--steer-layer", type=float, default=0.5, help="steering: layer (a float: fraction of depth)")
    ap.add_argument("--steer-batch", type=int, default=64, help="steering: rows per batched generate call")
    args = ap.parse_args(argv)
    from hub.models import load_model
    from hub.neurons import firing_counts
    from hub.patching import patch_last_token

    hm = load_model(args.model)
    g = torch.Generator().manual_seed(0)
    hi = min(hm.vocab_size, 30000)
    L = hm.n_layers
    prompt = torch.randint(10, hi, (args.prompt_tokens,), generator=g).tolist()
    src = hm.capture([torch.randint(10, hi, (args.prompt_tokens,), generator=g).tolist()], layers="all",
                     positions="last")
    sets = [[list(range(100, 140)), list(range(5000, 5040))]]

    @torch.no_grad()
    def plain():
        hm.forward_batch(hm.collate([prompt]), logits_to_keep=1)

    t_one, w_one = best_cpu(plain, args.repeats)
    patched = {cached: best_cpu(lambda c=cached: patch_last_token(hm, [prompt], src, list(range(L + 1)), sets,
                                                                  batch_size=L + 1, prefix_cache=c), args.repeats)
               for cached in (True, False)}
    window = 128
    wins = [torch.randint(10, hi, (window,), generator=g).tolist() for _ in range(max(1, args.tokens // window))]
    n_tok = len(wins) * window

    @torch.no_grad()
    def body():
        for i in range(0, len(wins), 4):
            with hm.hooks({}, stop_after=L):
                hm.forward_batch(hm.collate(wins[i:i + 4]))

    t_body, w_body = best_cpu(body, args.repeats)
    t_lape, w_lape = best_cpu(lambda: firing_counts(hm, wins, batch_size=4), args.repeats)
    rows = [
        {"what": f"patching k=0..{L}, one prompt, {label}", "cpu_s": t, "wall_s": w, "vs": "one plain forward",
         "ref_cpu_s": t_one, "ratio": t / t_one, "target": f"<= {L + 1}", "ok": t / t_one <= L + 1}
        for label, (t, w) in (("prefix cache (default)", patched[True]), ("full rows", patched[False]))]
    rows.append({"what": "LAPE firing counts", "cpu_s": t_lape, "wall_s": w_lape, "vs": "body-only forward",
                 "ref_cpu_s": t_body, "ratio": t_lape / t_body, "target": "",
                 "note": f"{1000 * t_lape / n_tok:.2f} s vs {1000 * t_body / n_tok:.2f} CPU s per 1k tokens"})
    if args.steer_prompts > 0:
        rows.append(steer_cells(hm, args))
    print_table(f"causal methods: {args.model}, {L} layers", rows)
    print(f"peak RSS {peak_rss_mb():.0f} MB; prompt {args.prompt_tokens} tokens; plain forward {t_one:.3f} CPU s "
          f"({w_one:.3f} s wall); load average {os.getloadavg()[0]:.1f}")
    return rows


def steer_cells(hm, args) -> dict:
    """One layer of steer_language: one generate call per cell vs all cells as per-item rows."""
    from hub.intervene import Intervention, generate_with
    from hub.language_vectors import language_vectors
    from modalities.text import read_table

    table = read_table(Path(__file__).resolve().parents[1] / "modalities/data/sentences.csv")
    k = round(args.steer_layer * hm.n_layers) if args.steer_layer < 1 else int(args.steer_layer)
    wins = {lang: hm.tokenize([str(x) for x in table[lang].dropna()]) for lang in ("en", "de", "fr", "ru", "zh")}
    v = {lang: x[0] for lang, x in language_vectors(hm, wins, [k], batch_size=8).items()}  # lang -> [d]
    native = v["fr"] - v["de"]
    r = torch.randn(native.shape, generator=torch.Generator().manual_seed(0))
    kinds = [native, v["fr"] - v["en"], r * native.norm() / r.norm()]
    cells = [(torch.zeros_like(native), 0.0)] + [(x, float(s)) for x in kinds for s in args.steer_scales.split(",")]
    prompts = [str(x) for x in table["de"].dropna().tolist()[:args.steer_prompts]]
    gen = dict(max_new_tokens=args.steer_tokens, return_ids=True)
    generate_with(hm, prompts[:2], None, max_new_tokens=2)  # warm-up
    c0, w0 = time.process_time(), time.perf_counter()
    old = []  # scale 0 is the plain unsteered generation, as before
    for x, s in cells:
        old += generate_with(hm, prompts, Intervention(x, k, "all", s) if s else None, batch_size=8, **gen)
    t_old, w_old = time.process_time() - c0, time.perf_counter() - w0
    c0, w0 = time.process_time(), time.perf_counter()
    vs = torch.stack([s * x for x, s in cells for _ in prompts])  # [cells * prompts, d]
    new = generate_with(hm, prompts * len(cells), Intervention(vs, k, "all", 1.0, per_item=True),
                        batch_size=args.steer_batch, **gen)
    t_new, w_new = time.process_time() - c0, time.perf_counter() - w0
    differ = sum(a != b for a, b in zip(old, new))
    return {"what": f"steer_language, layer {k}: {len(cells)} cells x {len(prompts)} prompts x "
                    f"{args.steer_tokens} tokens as per-item rows (chunks of {args.steer_batch})",
            "cpu_s": t_new, "wall_s": w_new, "vs": "one generate call per cell (batch 8)", "ref_cpu_s": t_old,
            "ratio": t_new / t_old, "target": "same ids", "ok": differ == 0,
            "note": f"old {w_old:.1f} s wall, new {w_new:.1f} s wall; {differ}/{len(old)} rows differ"}


if __name__ == "__main__":
    main()
