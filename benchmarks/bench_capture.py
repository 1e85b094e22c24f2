"""Capture cost vs its floor, the body-only forward (issue: foundation, performance).

Gemma-3-270m (default), batch 16 x 32 tokens, fp32, CPU. Measured in one run:
  full HF forward with logits  |  body-only forward (blocks + final norm, no unembedding)
  capture all layers at the last position   (target <= 1.05 x body)
  capture layers 0..k, k = L/3              (the forward stops after block k: < body)
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import best_of, peak_rss_mb, print_table


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3_270m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    from hub.models import load_model

    hm = load_model(args.model)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, min(hm.vocab_size, 30000), (args.batch, args.tokens), generator=g).tolist()
    batch = hm.collate(ids)
    kw = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
              use_cache=False)
    with torch.no_grad():
        t_full = best_of(lambda: hm.model(**kw), args.repeats)
        t_body = best_of(lambda: hm.body(**kw), args.repeats)
    t_cap = best_of(lambda: hm.capture(ids, layers="all", positions="last", batch_size=args.batch), args.repeats)
    k = max(1, hm.n_layers // 3)
    t_part = best_of(lambda: hm.capture(ids, layers=list(range(k + 1)), positions="last",
                                        batch_size=args.batch), args.repeats)
    rows = [
        {"what": "HF forward with logits", "seconds": t_full, "ratio_to_body": t_full / t_body, "target": ""},
        {"what": "body-only forward (floor)", "seconds": t_body, "ratio_to_body": 1.0, "target": ""},
        {"what": "capture all layers, last pos", "seconds": t_cap, "ratio_to_body": t_cap / t_body,
         "target": "<= 1.05", "ok": t_cap / t_body <= 1.05},
        {"what": f"capture layers 0..{k} (stops early)", "seconds": t_part, "ratio_to_body": t_part / t_body,
         "target": "< 1", "ok": t_part < t_body},
    ]
    print_table(f"capture vs body-only forward: {args.model}, batch {args.batch} x {args.tokens}, fp32", rows)
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    return rows


if __name__ == "__main__":
    main()
