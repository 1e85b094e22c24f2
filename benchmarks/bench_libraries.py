"""Our capture vs TransformerLens and nnsight on the same HF model, batch and layers.

For each model (Gemma-3-270m, SmolLM2-135M from the offline store), batch 16 x 32 random
tokens, all layers 0..L at the last position, fp32, CPU, measured in one process with the
methods interleaved (best of ``--repeats`` rounds after a warm-up round):

  body-only forward (the floor)          HF forward with logits
  ours: HubModel.capture                 TransformerLens 4.x: run_with_cache through its
  nnsight 0.8: trace + save              TransformerBridge over a loaded HF model (no download)
  nnsight 0.8: trace + save + tracer.stop() after the last needed layer

Each library wraps its own copy of the HF model (the bridge edits the module it wraps).
Parity: max |state - HF output_hidden_states| over layers 0..L-1 (HF's last entry is normed).
Peak memory: the largest RSS rise while one call runs (sampled every 2 ms).
Targets: TransformerLens / ours >= 3 on Gemma-3-270m, >= 1.4 on SmolLM2-135M; nnsight's best /
ours >= 1 (no slower than nnsight).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import print_table  # noqa: E402

TARGET_TL = {"gemma3_270m": 3.0, "smollm2_135m": 1.4}


class PeakRSS:
    """Peak resident-memory rise (MB) while the ``with`` block runs, sampled by a thread."""

    def __init__(self, every_s: float = 0.002) -> None:
        import psutil

        self.proc, self.every, self.peak_mb = psutil.Process(), every_s, 0.0

    def __enter__(self) -> PeakRSS:
        self.base = self.proc.memory_info().rss
        self.high, self.stop = self.base, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.high = max(self.high, self.proc.memory_info().rss)
            time.sleep(self.every)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.high = max(self.high, self.proc.memory_info().rss)
        self.peak_mb = (self.high - self.base) / 2**20


def interleaved_best(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Best wall time per method over rounds that run every method once (round 0 = warm-up),
    so load changes on a shared machine hit all methods alike; and each method's peak RSS rise."""
    best = {k: float("inf") for k in fns}
    mem = {k: 0.0 for k in fns}
    for r in range(repeats + 1):
        for k, fn in fns.items():
            gc.collect()
            with PeakRSS() as m, torch.no_grad():
                t = time.perf_counter()
                fn()
                dt = time.perf_counter() - t
            mem[k] = max(mem[k], m.peak_mb)
            if r:
                best[k] = min(best[k], dt)
    return best, mem


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def tl_capture(hm, path: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """TransformerLens 4.x bridge over a second copy of the HF model: run_with_cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformer_lens.model_bridge import TransformerBridge

    with _quiet():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        bridge = TransformerBridge.boot_transformers(path, hf_model=model, tokenizer=AutoTokenizer.from_pretrained(path),
                                                     dtype=torch.float32, device="cpu")
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(hm.n_layers)]
    wanted = set(names)

    def run(ids: torch.Tensor) -> torch.Tensor:
        _, cache = bridge.run_with_cache(ids, names_filter=lambda n: n in wanted)
        return torch.stack([cache[n][:, -1] for n in names], 1)

    return run


def nnsight_capture(hm, path: str) -> Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]:
    """nnsight 0.8 over a second copy of the HF model: trace + save (+ tracer.stop())."""
    import nnsight
    from nnsight import TransformersModel
    from transformers import AutoModelForCausalLM

    with _quiet():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        lm = TransformersModel(model, tokenizer=hm.tokenizer, task="text-generation")
    blocks = _get(_get(lm, hm.family.body), hm.family.blocks)
    L = hm.n_layers

    def run(ids: torch.Tensor, mask: torch.Tensor, stop: bool) -> torch.Tensor:
        with lm.trace(ids, attention_mask=mask) as tracer:
            outs = nnsight.save([])
            outs.append(blocks[0].input[:, -1])
            for i in range(L):
                outs.append(blocks[i].output[:, -1])
            if stop:
                tracer.stop()
        return torch.stack(outs, 1)

    return run


def bench_model(name: str, batch: int, tokens: int, repeats: int, libs: set[str]) -> list[dict]:
    from hub.models import load_model
    from hub.store import resolve

    hm = load_model(name)
    path = resolve(name)
    g = torch.Generator().manual_seed(0)
    ids_list = torch.randint(10, min(hm.vocab_size, 30000), (batch, tokens), generator=g).tolist()
    b = hm.collate(ids_list)
    kw = dict(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids, use_cache=False)
    fns: dict[str, Callable[[], object]] = {
        "body": lambda: hm.body(**kw),
        "hf_logits": lambda: hm.model(**kw),
        "ours": lambda: hm.capture(ids_list, layers="all", positions="last", batch_size=batch),
    }
    outs: dict[str, torch.Tensor] = {}
    if "transformer_lens" in libs:
        tl = tl_capture(hm, path)
        fns["tl"] = lambda: outs.__setitem__("tl", tl(b.input_ids))
    if "nnsight" in libs:
        nn_run = nnsight_capture(hm, path)
        fns["nnsight"] = lambda: outs.__setitem__("nnsight", nn_run(b.input_ids, b.attention_mask, False))
        fns["nnsight_stop"] = lambda: outs.__setitem__("nnsight_stop", nn_run(b.input_ids, b.attention_mask, True))
    with _quiet():
        t, mem = interleaved_best(fns, repeats)
    with torch.no_grad():
        ref = torch.stack(hm.model(**kw, output_hidden_states=True).hidden_states[:-1], 1)[:, :, -1]
    outs["ours"] = hm.capture(ids_list, layers="all", positions="last", batch_size=batch)

    def diff(k: str) -> float | None:
        return float((outs[k][:, :-1] - ref).abs().max()) if k in outs else None

    pre = f"{name} {batch}x{tokens}"
    rows = [
        {"what": f"{pre}: body-only forward (floor)", "seconds": t["body"], "ref_seconds": None, "ratio": None,
         "peak_mb": mem["body"]},
        {"what": f"{pre}: HF forward with logits", "seconds": t["hf_logits"], "ref_seconds": t["body"],
         "ratio": t["hf_logits"] / t["body"], "vs": "floor", "peak_mb": mem["hf_logits"]},
        {"what": f"{pre}: ours, capture all layers", "seconds": t["ours"], "ref_seconds": t["body"],
         "ratio": t["ours"] / t["body"], "vs": "floor", "target": "<= 1.05", "ok": t["ours"] / t["body"] <= 1.05,
         "peak_mb": mem["ours"], "max_abs_diff": diff("ours")},
    ]
    if "tl" in t:
        r = t["tl"] / t["ours"]
        tgt = TARGET_TL.get(name, 1.0)
        rows.append({"what": f"{pre}: TransformerLens run_with_cache", "seconds": t["tl"], "ref_seconds": t["ours"],
                     "ratio": r, "vs": "ours", "target": f">= {tgt}", "ok": r >= tgt, "peak_mb": mem["tl"],
                     "max_abs_diff": diff("tl")})
    for k, label in (("nnsight", "nnsight trace + save"), ("nnsight_stop", "nnsight trace + save + stop")):
        if k in t:
            r = t[k] / t["ours"]
            rows.append({"what": f"{pre}: {label}", "seconds": t[k], "ref_seconds": t["ours"], "ratio": r,
                         "vs": "ours", "target": ">= 1.0" if k == "nnsight_stop" else "", "ok": r >= 1.0 if
                         k == "nnsight_stop" else None, "peak_mb": mem[k], "max_abs_diff": diff(k)})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="gemma3_270m,smollm2_135m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--libs", default="transformer_lens,nnsight", help="comma list; empty = ours only")
    args = ap.parse_args(argv)
    libs = {x for x in args.libs.split(",") if x}
    for lib in list(libs):
        try:
            __import__(lib)
        except ImportError:
            print(f"{lib} is not installed (pip install -e '.[bench]'): skipped")
            libs.discard(lib)
    rows: list[dict] = []
    for name in args.models.split(","):
        rows += bench_model(name, args.batch, args.tokens, args.repeats, libs)
        gc.collect()
    print_table("capture vs TransformerLens and nnsight (ratio = seconds / the 'vs' row's seconds)", rows)
    return rows


if __name__ == "__main__":
    main()
