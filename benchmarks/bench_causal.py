"""Causal methods vs a plain forward (issue: causal tests of the hub).

- Patching k = 0..L for one target prompt (hub.patching.patch_last_token, batched over k) vs
  one plain forward of that prompt: the ratio is the number of forwards it is worth. Target:
  at most L+1 (one forward per start, batched), and well under it when batching pays.
- LAPE firing counts (hub.neurons.firing_counts: hooks on every MLP activation, counts only) vs
  the same windows through the body alone (stop after the last block, no hooks). Printed as
  seconds per 1k tokens and their ratio.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import best_of, peak_rss_mb, print_table


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3_270m")
    ap.add_argument("--tokens", type=int, default=1024, help="LAPE: tokens counted")
    ap.add_argument("--prompt-tokens", type=int, default=48, help="patching: target prompt length")
    ap.add_argument("--repeats", type=int, default=3)
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

    t_one = best_of(plain, args.repeats)
    t_patch = best_of(lambda: patch_last_token(hm, [prompt], src, list(range(L + 1)), sets, batch_size=L + 1),
                      args.repeats)
    window = 128
    wins = [torch.randint(10, hi, (window,), generator=g).tolist() for _ in range(max(1, args.tokens // window))]
    n_tok = len(wins) * window

    @torch.no_grad()
    def body():
        for i in range(0, len(wins), 4):
            with hm.hooks({}, stop_after=L):
                hm.forward_batch(hm.collate(wins[i:i + 4]))

    t_body = best_of(body, args.repeats)
    t_lape = best_of(lambda: firing_counts(hm, wins, batch_size=4), args.repeats)
    rows = [
        {"what": f"patching k=0..{L}, one prompt (batched)", "seconds": t_patch, "vs": "one plain forward",
         "ref_s": t_one, "ratio": t_patch / t_one, "target": f"<= {L + 1}", "ok": t_patch / t_one <= L + 1},
        {"what": "LAPE firing counts", "seconds": t_lape, "vs": "body-only forward", "ref_s": t_body,
         "ratio": t_lape / t_body, "target": "",
         "note": f"{1000 * t_lape / n_tok:.2f} s vs {1000 * t_body / n_tok:.2f} s per 1k tokens"},
    ]
    print_table(f"causal methods: {args.model}, {L} layers", rows)
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    return rows


if __name__ == "__main__":
    main()
