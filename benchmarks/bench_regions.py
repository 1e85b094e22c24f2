"""Importance accumulation on a real model: peak memory and seconds per 1k tokens.

    .venv/bin/python benchmarks/bench_regions.py [model=gemma3_270m] [tokens=512] [langs=en,zh] [threads=2]

Measures, in one process: loading the model; |θ ⊙ grad| accumulation over ``tokens`` scoring
tokens per language (windows of 128, batches of 4, block matrices only); held-out perplexity
(forward only) on the same budget, streamed through the lens (the default) and from the
model's own full logits; and building the regions. Peak memory is the process's
``ru_maxrss`` after each step (it only grows), so the increments say what each step added.
The last column divides by the forward-only time: how many perplexity forwards one scored
token costs. Numbers on a shared machine vary with its load: the load average is printed.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv)
    name = args.get("model", "gemma3_270m")
    tokens = int(args.get("tokens", 512))
    langs = args.get("langs", "en,zh").split(",")
    torch.set_num_threads(int(args.get("threads", torch.get_num_threads())))
    from hub.steps.regions import split_text
    from hub.cli import DATA_DIR
    from hub.models import load_model
    from hub.perplexity import perplexities
    from hub.regions import accumulate_importance, build_regions

    texts = {lang: split_text((DATA_DIR / "corpus" / f"{lang}.txt").read_text(encoding="utf-8"))[0]
             for lang in langs}
    rows = []
    base = rss_gb()
    t = time.time()
    hm = load_model(name)
    rows.append(("load model", time.time() - t, None, rss_gb()))
    t = time.time()
    imp = accumulate_importance(hm, texts, tokens=tokens, window=128, batch_size=4)
    n = sum(imp.tokens.values())
    rows.append(("importance (fwd+bwd)", time.time() - t, n, rss_gb()))
    t = time.time()
    perplexities(hm, texts, window=128, max_tokens=tokens, batch_size=4)
    rows.append(("perplexity (fwd)", time.time() - t, n, rss_gb()))
    t = time.time()
    perplexities(hm, texts, window=128, max_tokens=tokens, batch_size=4, streamed=False)
    rows.append(("perplexity, HF logits", time.time() - t, n, rss_gb()))
    t = time.time()
    rs = build_regions(imp, k=0.01)
    rows.append((f"build {len(rs.masks)} regions", time.time() - t, None, rss_gb()))
    fwd = rows[2][1] / rows[2][2]
    print(f"model {name}: {imp.identity['n_params']:,} scored parameters; {len(langs)} languages x {tokens} tokens "
          f"budget ({n} scored tokens); torch threads {torch.get_num_threads()}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus; peak RSS before loading {base:.2f} GB")
    print(f"{'step':24s} {'seconds':>8s} {'s / 1k tok':>10s} {'peak RSS GB':>11s} {'x forward':>9s}")
    for step, sec, tok, rss in rows:
        per = f"{1000 * sec / tok:10.1f}" if tok else f"{'':10s}"
        ratio = f"{sec / tok / fwd:9.2f}" if tok else ""
        print(f"{step:24s} {sec:8.1f} {per} {rss:11.2f} {ratio}")


if __name__ == "__main__":
    main(sys.argv[1:])
