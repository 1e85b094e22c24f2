"""Benchmark hub.metrics.engine against a straightforward per-layer numpy reference.

Random paired states of the target size (N = 2048 pairs, 19 layers, d = 640), all default
metrics with default CI settings. Prints best-of-3 wall times (after a warm-up) for
``compare`` with and without CIs, the time of a plain numpy reference (a loop over layers;
every metric computes its own Gram matrices, no reuse), their ratio, the max abs difference
between the two per metric, and peak RSS. Also, from the same run: the matmul floor of exact
k-NN and retrieval (see :func:`matmul_floor`) and the model time of capturing N real word
pairs with a store model, each with compare()'s ratio to it.

Run from the repository root:  .venv/bin/python benchmarks/bench_compare.py [--n 2048 ...]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hub.metrics import METRICS, compare  # noqa: E402


# ----------------------------------------------------------------------------- reference
def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _cos_adj(a: np.ndarray, b: np.ndarray) -> float:
    c = _unit(a) @ _unit(b).T
    n = len(c)
    paired = np.trace(c) / n
    unpaired = (c.sum() - np.trace(c)) / (n * (n - 1))
    return paired - unpaired


def _centred_gram(a: np.ndarray) -> np.ndarray:
    ac = a - a.mean(0)
    return ac @ ac.T  # = H a a' H, fp32 like the inputs


def _cka(a: np.ndarray, b: np.ndarray) -> float:
    k, l = _centred_gram(a), _centred_gram(b)
    kl, kk, ll = ((p * q).sum(dtype=np.float64) for p, q in ((k, l), (k, k), (l, l)))
    return float(kl / np.sqrt(kk * ll))


def _hsic_u(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC, straight from the formula."""
    n = len(k)
    k = k.astype(np.float64)
    l = l.astype(np.float64)
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    t1 = (k * l).sum()
    t2 = k.sum() * l.sum() / ((n - 1) * (n - 2))
    t3 = 2.0 / (n - 2) * (k.sum(0) @ l.sum(1))
    return (t1 + t2 - t3) / (n * (n - 3))


def _cka_debiased(a: np.ndarray, b: np.ndarray) -> float:
    # HSIC_u is translation invariant; centring first only avoids fp32 cancellation
    k, l = _centred_gram(a), _centred_gram(b)
    return float(_hsic_u(k, l) / np.sqrt(_hsic_u(k, k) * _hsic_u(l, l)))


def _knn(a: np.ndarray, k: int) -> np.ndarray:
    g = _unit(a) @ _unit(a).T
    np.fill_diagonal(g, -np.inf)
    return np.argpartition(-g, k, axis=1)[:, :k]


def _mknn(a: np.ndarray, b: np.ndarray, k: int) -> float:
    na, nb = _knn(a, k), _knn(b, k)
    return float(np.mean([len(set(na[i]) & set(nb[i])) / k for i in range(len(a))]))


def _retrieval(a: np.ndarray, b: np.ndarray) -> float:
    c = _unit(a) @ _unit(b).T
    idx = np.arange(len(c))
    return float(((c.argmax(1) == idx).mean() + (c.argmax(0) == idx).mean()) / 2)


def reference(x: np.ndarray, y: np.ndarray, k: int = 10) -> dict[str, np.ndarray]:
    """Per-layer loop, each metric on its own (no Gram reuse): the obvious implementation."""
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    for a, b in zip(x, y):
        out["cos_adjusted"].append(_cos_adj(a, b))
        out["cos_centered"].append(_cos_adj(a - a.mean(0), b - b.mean(0)))
        out["cka"].append(_cka(a, b))
        out["cka_debiased"].append(_cka_debiased(a, b))
        out["mknn"].append(_mknn(a, b, k))
        out["retrieval_top1"].append(_retrieval(a, b))
    return {m: np.asarray(v) for m, v in out.items()}


def matmul_floor(x: torch.Tensor, y: torch.Tensor) -> None:
    """The products no exact implementation avoids: per layer x x^T and y y^T (mutual k-NN needs
    every item's neighbours; CKA reuses these Grams) and x y^T (top-1 retrieval), fp32, one
    layer at a time. Self-Grams are symmetric, so they are charged at half a product each
    (what an ideal syrk would cost); the cross product in full."""
    n = x.shape[1]
    h = n // 2
    for a, b in zip(x, y):
        a[:h] @ a.T  # n^2 d / 2 multiply-adds: half of a @ a.T
        b[:h] @ b.T
        a @ b.T


def model_time(name: str, n: int, L: int, d: int) -> tuple[float | None, str]:
    """Wall time of capturing the states the comparator reads for n word pairs (2n inputs, all
    layers, last token) with a store model, once; (None, why) when it cannot run."""
    if name == "none":
        return None, "skipped (--model none)"
    from hub.models import load_model
    from hub.store import default_store

    if not default_store().is_installed(name):
        return None, f"skipped: {name} is not in the model store (semantic-hub-models fetch {name})"
    from modalities.text import DATA, load_parallel, read_table

    words = DATA / "words.csv"
    langs = [c for c in read_table(words).columns if c not in ("concept", "en")]
    table = load_parallel(words, ["en", *langs])  # the adapter's own reader: checks, drops counted
    pairs = [(en, w) for lang in langs for en, w in zip(table.cells["en"], table.cells[lang])][:n]
    hm = load_model(name)
    if hm.n_layers + 1 != L or hm.d_model != d:
        print(f"(note: {name} has {hm.n_layers + 1} layers x d={hm.d_model}; the comparator runs {L} x {d})")
    t0 = time.perf_counter()
    hm.capture([a for a, _ in pairs] + [b for _, b in pairs], layers="all", positions="last", batch_size=64)
    return time.perf_counter() - t0, f"{name}: capture of {2 * len(pairs)} word inputs, all layers, last token"


# ----------------------------------------------------------------------------- timing
def _best(fn, repeats: int, warmup: bool = True) -> tuple[float, float, object]:
    """Best wall time and best process CPU time (all threads) over ``repeats`` runs."""
    if warmup:
        fn()
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048, help="paired items")
    ap.add_argument("--layers", type=int, default=19)
    ap.add_argument("--d", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timed runs")
    ap.add_argument("--ref-repeats", type=int, default=1, help="timed runs of the slow reference")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="gemma3_270m",
                    help="store model whose capture of the same N pairs is timed (English word vs its "
                         "translation, all layers, last token); 'none' to skip")
    args = ap.parse_args()

    g = torch.Generator().manual_seed(args.seed)
    L, n, d = args.layers, args.n, args.d
    # x: low-rank structure + noise + a common offset (anisotropic, like LM states);
    # y: x plus heavy noise. Chosen so that no metric is saturated or at chance.
    z = torch.randn(L, n, 32, generator=g)
    x = z @ (1.5 / 32**0.5 * torch.randn(L, 32, d, generator=g))
    x += torch.randn(L, n, d, generator=g) + 3.0 * torch.randn(L, 1, d, generator=g)
    y = x + 6.0 * torch.randn(L, n, d, generator=g)

    t_ours, c_ours, df = _best(lambda: compare(x, y), args.repeats)
    t_floor, _, _ = _best(lambda: matmul_floor(x, y), args.repeats)
    t_model, model_note = model_time(args.model, n, L, d)
    t_nobo, c_nobo, _ = _best(lambda: compare(x, y, n_boot=0), args.repeats)
    rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t_ref, c_ref, ref = _best(lambda: reference(x.numpy(), y.numpy()), args.ref_repeats, warmup=False)
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"

    print(f"semantic-hub comparator benchmark: N={n} pairs, {L} layers, d={d}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load avg {load}")
    print()
    print(f"{'implementation':<46}{'wall [s]':>10}{'cpu [s]':>10}{'ref/ours':>10}")
    for name, t, c in (
        ("compare(), all metrics, default CIs", t_ours, c_ours),
        ("compare(), all metrics, n_boot=0", t_nobo, c_nobo),
        ("numpy per-layer reference (no CIs, no reuse)", t_ref, c_ref),
    ):
        print(f"{name:<46}{t:>10.3f}{c:>10.3f}{t_ref / t:>10.2f}")
    print(f"matmul floor (x x^T, y y^T at half cost, x y^T; fp32): {t_floor:.3f} s; "
          f"compare() / floor = {t_ours / t_floor:.2f}; floor alone is {t_floor / 2.0:.2f} x the 2 s target")
    print("(wall: best of runs; cpu: process CPU time summed over threads, a load-robust proxy)")
    if t_model is not None:
        print(f"model time: {t_model:.3f} s ({model_note}); compare() / model = {t_ours / t_model:.3f}")
    else:
        print(f"model time: {model_note}")
    print()
    print(f"{'metric':<16}{'max |ours - ref|':>18}{'mean value':>12}{'baseline':>10}")
    worst = 0.0
    for m in METRICS:
        ours = df[df.metric == m].value.to_numpy()
        diff = float(np.max(np.abs(ours - ref[m])))
        worst = max(worst, diff)
        base = df[df.metric == m].baseline.mean()
        print(f"{m:<16}{diff:>18.2e}{ours.mean():>12.4f}{base:>10.4f}")
    rss_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"peak RSS: {rss_ours:.0f} MiB after compare() runs (inputs included), "
          f"{rss_all:.0f} MiB after the reference")
    print(f"agreement: {'OK' if worst < 1e-3 else 'MISMATCH'} (max abs diff {worst:.2e})")


if __name__ == "__main__":
    main()
