"""Logit-lens readout of all layers at the answer position vs its floor (issue: multilingual).

Floor: one stacked matmul [items*layers, d] @ W_U^T. Compared with one matmul per layer and
with one item and one layer at a time (matrix-vector products), and with the forward pass.
Target: our readout (LogitLens.reduce with token sets, entropy) <= 1.1 x the floor.

Patchscope (issue 15): decoding one item's states at every layer costs forwards of the
target prompt (rows = layers, one batched forward per item). Printed per item as a ratio to a
plain forward of that item (its share of the batched capture forward, and alone at batch 1),
batched and one layer per forward (rows_per_forward=1).

Tuned lens (issue 15): TunedLens.reduce (translators: one batched [layers, d, d] einsum, then
the same streamed readout) on the same states and sets, as a ratio to LogitLens.reduce.
Target: <= 1.15.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import best_of, peak_rss_mb, print_table


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3_270m")
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ps-items", type=int, default=4, help="items timed for the patchscope rows")
    args = ap.parse_args(argv)
    from hub.lens import LogitLens, PatchscopeLens, TunedLens
    from hub.models import load_model

    hm = load_model(args.model)
    ids = torch.randint(10, min(hm.vocab_size, 30000), (args.items, args.tokens), generator=torch.Generator().manual_seed(0)).tolist()
    states = hm.capture(ids, layers="all", positions="last")  # [items, layer, d]
    n, L, d = states.shape
    lens = LogitLens(hm)
    W = hm.unembed.weight
    flat = states.reshape(n * L, d)

    @torch.no_grad()
    def floor():
        return hm.final_norm(flat) @ W.T

    @torch.no_grad()
    def per_layer():
        return [hm.final_norm(states[:, k]) @ W.T for k in range(L)]

    @torch.no_grad()
    def per_item_layer(sub: int = 2):
        return [W @ hm.final_norm(states[i, k]) for i in range(sub) for k in range(L)]

    V = hm.vocab_size
    sets = [[list(range(100 + i, 110 + i)), list(range(V // 2, V // 2 + 20))] for i in range(n)]
    t_floor = best_of(floor, args.repeats)
    t_ours = best_of(lambda: lens.reduce(states, token_sets=sets), args.repeats)
    tuned = TunedLens.identity(hm)  # random translators: the cost does not depend on the values
    with torch.no_grad():
        tuned.A.normal_(0, 0.01, generator=torch.Generator().manual_seed(0))
        tuned.b.normal_(0, 0.01, generator=torch.Generator().manual_seed(1))
    all_layers = list(range(L))
    t_tuned = best_of(lambda: tuned.reduce(states, token_sets=sets, layers=all_layers), args.repeats)
    t_layer = best_of(per_layer, args.repeats)
    t_item = best_of(per_item_layer, 1) * n / 2  # measured on 2 items, scaled to all items
    t_fwd = best_of(lambda: hm.capture(ids, layers="all", positions="last"), args.repeats)
    rows = [
        {"what": "stacked matmul (floor)", "seconds": t_floor, "ratio_to_floor": 1.0, "target": ""},
        {"what": "LogitLens.reduce (sets+entropy)", "seconds": t_ours, "ratio_to_floor": t_ours / t_floor,
         "target": "<= 1.1", "ok": t_ours / t_floor <= 1.1},
        {"what": "TunedLens.reduce (sets+entropy)", "seconds": t_tuned, "ratio_to_floor": t_tuned / t_floor,
         "target": "<= 1.15 x LogitLens.reduce", "ok": t_tuned / t_ours <= 1.15},
        {"what": "one matmul per layer", "seconds": t_layer, "ratio_to_floor": t_layer / t_floor, "target": ""},
        {"what": "item x layer mat-vec (scaled)", "seconds": t_item, "ratio_to_floor": t_item / t_floor, "target": ""},
        {"what": "forward (capture all layers)", "seconds": t_fwd, "ratio_to_floor": t_fwd / t_floor, "target": ""},
    ]
    m = min(args.ps_items, n)
    ps_sets, ps_states = sets[:m], states[:m]
    t_one = best_of(lambda: hm.capture(ids[:1], layers="all", positions="last"), args.repeats)  # plain forward, 1 item
    ps = PatchscopeLens(hm, rows_per_forward=L)  # one forward per item, rows = layers
    t_ps = best_of(lambda: ps.reduce(ps_states, token_sets=ps_sets, layers=list(range(L))), args.repeats) / m
    ps1 = PatchscopeLens(hm, rows_per_forward=1)  # one forward per (item, layer)
    t_ps1 = best_of(lambda: ps1.reduce(ps_states[:1], token_sets=ps_sets[:1], layers=list(range(L))), 1)
    rows += [
        {"what": "plain forward, 1 item", "seconds": t_one, "ratio_to_floor": t_one / t_floor, "target": ""},
        {"what": f"patchscope per item ({L} layers batched)", "seconds": t_ps, "ratio_to_floor": t_ps / t_floor,
         "target": ""},
        {"what": "patchscope per item (1 layer per forward)", "seconds": t_ps1, "ratio_to_floor": t_ps1 / t_floor,
         "target": ""},
    ]
    print_table(f"lens readout: {args.model}, {n} items x {L} layers, vocab {hm.vocab_size}", rows)
    per = t_fwd / n  # one item's share of the batched plain forward
    print(f"tuned lens / logit lens readout = {t_tuned / t_ours:.3f} (target <= 1.15)")
    print(f"lens/forward = {t_ours / t_fwd:.2f}; patchscope per item / plain forward per item (batched; alone) = "
          f"{t_ps / per:.2f}; {t_ps / t_one:.2f} ({L} layers batched), {t_ps1 / per:.2f}; {t_ps1 / t_one:.2f} "
          "(one forward per layer); "
          f"target prompt {len(ps.target_ids)} tokens, item {args.tokens} tokens; peak RSS {peak_rss_mb():.0f} MB")
    return rows


if __name__ == "__main__":
    main()
