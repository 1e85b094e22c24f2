"""Smoke job: the logit lens, layer by layer, on one French -> Chinese translation prompt.

Method. Capture the residual stream at the last prompt position (the answer position) at
every layer 0..L, project each state through final norm + unembedding in one stacked matmul,
and list the top tokens per layer.
"""
from __future__ import annotations

import pandas as pd

from hub.context import RunContext
from hub.lens import LogitLens


def run(ctx: RunContext) -> None:
    cfg, hm = ctx.cfg, ctx.model
    prompt = cfg.experiment.prompt
    states = hm.capture([prompt], layers="all", positions="last")  # [1, layer, d]
    lens = LogitLens(hm, apply_norm=cfg.lens_norm)
    red = lens.reduce(states, top_k=cfg.experiment.top_k)
    rows, table = [], []
    for layer in range(states.shape[1]):
        toks = [hm.tokenizer.decode([int(t)]) for t in red["top_ids"][0, layer]]
        probs = red["top_probs"][0, layer].tolist()
        rows.append({"metric": "entropy", "layer": layer, "value": float(red["entropy"][0, layer]), "n": 1})
        table.append({"layer": layer, "top tokens (p)": ", ".join(f"{t!r} ({p:.2f})" for t, p in zip(toks, probs)),
                      "entropy (bits)": float(red["entropy"][0, layer])})
    ctx.add(pd.DataFrame(rows), task="translation", src="fr", tgt="zh")
    ctx.report.section(
        "Logit lens on a French → Chinese translation prompt",
        f"Prompt (answer position = its last token):\n\n```\n{prompt}\n```\n\n"
        "Top next-token predictions when each layer's state is read through the final norm and "
        "unembedding (layer 0 = embeddings, layer k = output of block k).",
        table=pd.DataFrame(table),
    )
