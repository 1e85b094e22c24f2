"""`make gpu-check`: the big-model path on this machine, in one run (README "Big models").

CPU rows (always): bf16 vs fp32 latent-language curves (16 fr->zh prompts, logit lens) and
accelerate disk-offload parity (a tiny model with half its blocks on disk vs in memory).
GPU rows (only with CUDA): capture parity cuda fp32 vs cpu fp32, bf16 vs fp32 curves on cuda,
capture throughput vs nnsight trace + stop() (same GPU, batch, layers; needs nnsight), peak
GPU memory, and a device_map split of the model across cuda:0 and cpu vs the cpu model.
Without CUDA the GPU rows are printed as not measured.
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from benchmarks.common import best_of, print_table


def curves(hm, lt) -> dict[str, np.ndarray]:
    from hub.lens.readout import lens_readout

    df, _ = lens_readout(hm, lt.prompts, lt.token_sets, lt.set_names, energy=False)
    lp = df[df.metric == "lang_prob"]
    return {lang: g.sort_values("layer")["value"].to_numpy() for lang, g in lp.groupby("lang")}


def curve_row(model: str, device: str, ref_curves=None) -> tuple[dict, dict]:
    """bf16 vs fp32 per-layer lang_prob on ``device``: max |difference| and whether the peaks agree."""
    from hub.models import load_model
    from modalities.text import TextAdapter

    fp = load_model(model, device=device)
    lt = TextAdapter(max_items=16, seed=0).lens_task("translation", "fr", "zh", fp.tokenizer)
    ref = ref_curves or curves(fp, lt)
    got = curves(load_model(model, dtype="bfloat16", device=device), lt)
    diff = max(float(np.abs(ref[k] - got[k]).max()) for k in ref)
    peaks = all(int(ref[k].argmax()) == int(got[k].argmax()) for k in ref)
    return {"what": f"bf16 vs fp32 lang_prob curves, {device}", "value": diff, "target": "<= 0.02, peaks equal",
            "ok": diff <= 0.02 and peaks}, ref


def offload_row(device_of_kept: str = "cpu") -> dict:
    """Tiny llama: half its blocks on disk (accelerate offload) vs the plain model, all-layer states."""
    from hub.models import load_model
    from hub.models.tiny import tiny_model

    ref = tiny_model("llama", seed=0)
    texts = ["The cat sat on the mat.", "Le chat", "5+3=8 and one two three"]
    with tempfile.TemporaryDirectory() as where, tempfile.TemporaryDirectory() as off:
        ref.model.save_pretrained(where)
        ref.tokenizer.save_pretrained(where)
        L = ref.n_layers
        dm = {"model.embed_tokens": device_of_kept, "model.norm": device_of_kept, "model.rotary_emb": device_of_kept,
              "lm_head": device_of_kept, **{f"model.layers.{i}": device_of_kept if i < L // 2 else "disk"
                                            for i in range(L)}}
        hm = load_model(where, device_map=dm, offload_folder=off)
        diff = float((hm.capture(texts) - ref.capture(texts)).abs().max())
    return {"what": f"disk offload (half the blocks) vs plain, {device_of_kept}", "value": diff,
            "target": "<= 1e-5", "ok": diff <= 1e-5}


def gpu_rows(model: str, batch: int, tokens: int, ref_curves) -> list[dict]:
    from hub.models import load_model

    rows = []
    cpu = load_model(model)
    torch.cuda.reset_peak_memory_stats()
    gpu = load_model(model, device="cuda")
    ids = torch.randint(10, min(cpu.vocab_size, 30000), (batch, tokens), generator=torch.Generator().manual_seed(0)).tolist()
    a, b = cpu.capture(ids), gpu.capture(ids)  # [n, layer, d] fp32 on the CPU
    rel = float(((a - b).norm(dim=-1) / a.norm(dim=-1).clamp_min(1e-6)).max())
    rows.append({"what": "capture parity cuda fp32 vs cpu fp32 (max rel err)", "value": rel, "target": "<= 1e-3",
                 "ok": rel <= 1e-3})
    rows.append(curve_row(model, "cuda", ref_curves)[0])

    def ours():
        gpu.capture(ids, batch_size=batch)
        torch.cuda.synchronize()
    t_ours = best_of(ours, 5)
    rows.append({"what": f"our capture, all layers, batch {batch}x{tokens}, cuda (s)", "value": t_ours})
    try:
        import nnsight  # noqa: F401
    except ImportError:
        rows.append({"what": "nnsight trace + stop(): not installed (pip install nnsight), not measured",
                     "value": float("nan")})
    else:
        rows.append(nnsight_row(gpu, ids, t_ours, batch))
    rows.append({"what": "peak GPU memory (GiB)", "value": torch.cuda.max_memory_allocated() / 2**30})
    half = sum(p.numel() * p.element_size() for p in cpu.model.parameters()) // 2
    dm_kw = {"device_map": "auto", "max_memory": {0: f"{half}B", "cpu": "64GiB"}}  # about half on cuda:0
    split = load_model(model, **dm_kw)
    on = sorted({str(p.device) for p in split.model.parameters()})
    rel = float(((split.capture(ids) - a).norm(dim=-1) / a.norm(dim=-1).clamp_min(1e-6)).max())
    rows.append({"what": f"device_map cuda:0 + cpu ({', '.join(on)}) vs cpu (max rel err)", "value": rel, "target": "<= 1e-3",
                 "ok": rel <= 1e-3})
    return rows


def nnsight_row(hm, ids, t_ours: float, batch: int) -> dict:
    """nnsight trace + save + tracer.stop() after the last block, on the same GPU model and batch."""
    import nnsight
    from nnsight import LanguageModel

    from benchmarks.bench_libraries import _get

    lm = LanguageModel(hm.model, tokenizer=hm.tokenizer)
    blocks = _get(_get(lm, hm.family.body), hm.family.blocks)
    b = hm.collate(ids)

    def run():
        with lm.trace(b.input_ids, attention_mask=b.attention_mask) as tracer:
            outs = nnsight.save([])
            outs.append(blocks[0].input[:, -1])
            for i in range(hm.n_layers):
                outs.append(blocks[i].output[:, -1])
            tracer.stop()
        torch.cuda.synchronize()
    t = best_of(run, 5)
    return {"what": "nnsight trace + stop() / ours (time ratio)", "value": t / t_ours, "target": ">= 1", "ok": t >= t_ours}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3_270m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args(argv)
    from hub.store import default_store

    rows: list[dict] = [offload_row()]
    ref = None
    if default_store().is_installed(args.model):
        row, ref = curve_row(args.model, "cpu")
        rows.insert(0, row)
    else:
        print(f"{args.model} is not installed (semantic-hub-models fetch {args.model}): curve rows not measured")
    if torch.cuda.is_available() and ref is not None:
        rows += gpu_rows(args.model, args.batch, args.tokens, ref)
        note = f"GPU rows measured on {torch.cuda.get_device_name(0)}"
    else:
        note = "NO CUDA on this machine: the GPU rows (cuda parity, cuda curves, nnsight throughput, peak GPU " \
               "memory, cuda:0+cpu device_map) were NOT measured; only the CPU rows above"
    print_table(f"gpu-check: {args.model}", rows)
    print(note)
    return rows


if __name__ == "__main__":
    main()
