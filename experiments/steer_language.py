"""Steering the output language with language vectors (e.g. Schut et al. 2025).

Method. A language vector at layer k is the mean residual state over a language's text (the
scoring part of the shipped corpus, every token but BOS) minus the mean over all languages.
To steer prompts written in A towards B we add ``scale * (v(B) - v(A))`` to the output of
block k at every prompt position and every generated token, generate greedily, and identify
the language of each continuation with lingua (a detector made for short text). Per
direction, layer and scale we report the rate of continuations identified as B and as A, and
the continuations' perplexity under the unsteered model (the price of steering; repetitive,
degenerate text is cheap under it too, so we also report the fraction of distinct tokens per
continuation). Controls:
scale 0 (the unsteered baseline) and a random direction of the same norm. Hub view: the same
steering with ``v(B) - v(en)``, a vector that knows nothing of A; if the middle layers are an
English-centred hub, it should steer A's prompts about as well as the native vector.

Batching. Every cell of one layer (direction x vector kind x scale, and the unsteered scale 0
as a zero vector) runs as one per-item intervention: rows = cells x prompts, generated in
chunks of ``experiment.gen_batch_size`` rows and scored together; the same token ids as one
generate call per cell (tested on tiny models; measured on Gemma in ``bench_causal``).
"""
from __future__ import annotations

import pandas as pd
import torch
from tqdm.auto import tqdm

from hub.context import RunContext
from hub.errors import UserError
from hub.intervene import Intervention, generate_with
from hub.language_vectors import LanguageIdentifier, language_vectors
from hub.perplexity import continuation_nll, token_windows
from hub.plots import save_fig
from hub.stats import wilson
from hub.steps.regions import load_splits
from hub.steps.steering import resolve_layers
from modalities.text import read_table


def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg, ctx.model
    e = cfg.experiment
    directions = [(str(a), str(b)) for a, b in e.directions]
    scoring, _ = load_splits(cfg)
    langs = list(scoring)
    for a, b in directions:
        for lang in (a, b, e.hub_lang):
            if lang not in langs:
                raise UserError(f"experiment.directions: language {lang!r} is not in experiment.languages={langs}")
    layers = resolve_layers(hm, list(e.layers))
    wins = {lang: token_windows(hm, t, int(e.window), int(e.tokens), name=f"language {lang!r}")
            for lang, t in scoring.items()}
    vecs = language_vectors(hm, wins, layers, int(e.batch_size))  # lang -> [layers, d]
    sentences = read_table(cfg.data.sentences)
    lid = LanguageIdentifier(langs)
    rng = torch.Generator().manual_seed(int(cfg.seed))
    prompts = {a: [str(x) for x in sentences[a].dropna().tolist()[: int(e.n_prompts)]] for a, _ in directions}
    cells = [(a, b, kind, li, float(s)) for a, b in directions for kind in e.vectors for li in range(len(layers))
             for s in e.scales if s != 0]
    # every cell's vector drawn in this order (a seed gives the same random directions as one call per cell)
    steer_vecs = {c: c[4] * _direction(vecs, *c[:4], e.hub_lang, rng) for c in cells}
    units = []
    for li, k in enumerate(tqdm(layers, desc="steer_language", disable=not cfg.progress)):
        todo = [c for c in cells if c[3] == li]
        if li == 0:  # scale 0 (unsteered): a zero vector, shared by every vector kind and layer
            todo = [(a, b, None, li, 0.0) for a, b in directions] + todo
        rows = [p for c in todo for p in prompts[c[0]]]
        vs = torch.stack([steer_vecs.get(c, torch.zeros(hm.d_model)) for c in todo for _ in prompts[c[0]]])
        # all cells of layer k as one per-item intervention: rows = cells x prompts, one batched generate
        conts = _generate(hm, rows, Intervention(vs, k, "all", 1.0, per_item=True), e)
        scored = _score(hm, rows, conts, lid, int(e.batch_size))
        start = 0
        for a, b, kind, _, s in todo:
            n = len(prompts[a])
            part = scored.iloc[start:start + n].reset_index(drop=True)
            start += n
            if kind is None:
                units += [part.assign(src=a, tgt=b, vector=kv, layer=kl, scale=0.0)
                          for kv in e.vectors for kl in layers]
            else:
                units.append(part.assign(src=a, tgt=b, vector=kind, layer=k, scale=s))
    gens = pd.concat(units, ignore_index=True)
    gens.to_json(ctx.out / "generations.jsonl", orient="records", lines=True, force_ascii=False)
    df = ctx.add(_summarise(gens), task="steer_language", modality="text")
    _report(ctx, df)
    return df


def _direction(vecs, a: str, b: str, kind: str, li: int, hub: str, rng: torch.Generator) -> torch.Tensor:
    native = vecs[b][li] - vecs[a][li]
    if kind == "native":
        return native
    if kind == "from_hub":
        return vecs[b][li] - vecs[hub][li]
    if kind == "random":
        r = torch.randn(native.shape, generator=rng)
        return r * native.norm() / r.norm()
    raise UserError(f"experiment.vectors: unknown kind {kind!r}; expected native, from_hub or random")


def _generate(hm, prompts, iv, e) -> list[list[int]]:
    """Greedy continuations' token ids (one generate call per ``experiment.gen_batch_size`` rows)."""
    return generate_with(hm, prompts, iv, max_new_tokens=int(e.max_new_tokens), batch_size=int(e.gen_batch_size),
                         return_ids=True)


def _score(hm, prompts: list[str], conts: list[list[int]], lid, batch_size: int) -> pd.DataFrame:
    """One row per continuation (all cells of a layer at once): its text, detected language and
    mean NLL under the unsteered model (the generated ids themselves, scored as padded batches;
    NaN when empty)."""
    nll = continuation_nll(hm, hm.tokenize(prompts), conts, batch_size=batch_size)
    texts = [hm.tokenizer.decode(c, skip_special_tokens=True) for c in conts]
    distinct = [len(set(c)) / len(c) if c else float("nan") for c in conts]  # low: repetitive, degenerate text
    return pd.DataFrame({"text": texts, "detected": lid.many(texts), "nll": nll.tolist(), "distinct": distinct})


def _summarise(gens: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (a, b, kind, k, s), g in gens.groupby(["src", "tgt", "vector", "layer", "scale"]):
        n = len(g)
        for metric, hits in (("rate_tgt", (g["detected"] == b).sum()), ("rate_src", (g["detected"] == a).sum())):
            lo, hi = wilson(int(hits), n)
            rows.append({"metric": metric, "src": a, "tgt": b, "vector": kind, "layer": k, "scale": s,
                         "value": hits / n, "ci_low": lo, "ci_high": hi, "n": n})
        nll = g["nll"].dropna()
        if len(nll):
            ppl = float(torch.tensor(nll.to_numpy()).mean().exp())
            rows.append({"metric": "continuation_ppl", "src": a, "tgt": b, "vector": kind, "layer": k, "scale": s,
                         "value": ppl, "ci_low": float("nan"), "ci_high": float("nan"), "n": len(nll)})
        dist = g["distinct"].dropna()
        if len(dist):  # repetitive output also has a low perplexity: this tells the two apart
            rows.append({"metric": "distinct_tokens", "src": a, "tgt": b, "vector": kind, "layer": k, "scale": s,
                         "value": float(dist.mean()), "ci_low": float("nan"), "ci_high": float("nan"),
                         "n": len(dist)})
    return pd.DataFrame(rows)


def _report(ctx: RunContext, df: pd.DataFrame) -> None:
    import matplotlib.pyplot as plt

    rates = df[df["metric"] == "rate_tgt"]
    dirs = list(dict.fromkeys(zip(rates["src"], rates["tgt"])))
    kinds = list(dict.fromkeys(rates["vector"]))
    fig, axes = plt.subplots(1, len(dirs), figsize=(4.4 * len(dirs), 3.4), squeeze=False, sharey=True)
    styles = ["-", "--", ":", "-."]
    for ax, (a, b) in zip(axes[0], dirs):
        sub = rates[(rates["src"] == a) & (rates["tgt"] == b)]
        for ki, kind in enumerate(kinds):
            for li, (k, d) in enumerate(sub[sub["vector"] == kind].groupby("layer")):
                d = d.sort_values("scale")
                ax.plot(d["scale"], d["value"], linestyle=styles[ki % 4], marker="os^vD"[li % 5],
                        color=f"C{li}", label=f"{kind}, layer {k}")
        ax.set_title(f"{a} prompts, steered to {b}")
        ax.set_xlabel("scale")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("rate identified as target")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    path = save_fig(fig, ctx.out / "steer_language_rates.png")
    lines = []
    for a, b in dirs:
        sub = rates[(rates["src"] == a) & (rates["tgt"] == b)]
        base = sub[sub["scale"] == 0]["value"].max()
        for kind in kinds:
            best = sub[(sub["vector"] == kind) & (sub["scale"] != 0)].sort_values("value").tail(1)
            if len(best):
                r = best.iloc[0]
                cell = df[(df["src"] == a) & (df["tgt"] == b) & (df["vector"] == kind) & (df["layer"] == r["layer"])
                          & (df["scale"] == r["scale"])].set_index("metric")["value"]
                lines.append(f"- {a}→{b}, {kind}: best rate {r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] "
                             f"at layer {int(r['layer'])}, scale {r['scale']:g} (unsteered {base:.2f}; continuation "
                             f"perplexity {cell.get('continuation_ppl', float('nan')):.1f}, distinct tokens "
                             f"{cell.get('distinct_tokens', float('nan')):.2f})")
    ctx.report.section("Language steering", "Rate of continuations identified as the target language "
                       "(lingua), with 95% Wilson intervals.\n" + "\n".join(lines), figures=[path])
