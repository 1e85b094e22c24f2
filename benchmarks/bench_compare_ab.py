"""The comparator at an older commit against the working tree, in one process.

``hub/metrics`` at ``--rev`` is extracted with ``git archive`` into a temporary directory and
imported as the package ``oldhub``. Both versions then run ``compare(x, y)`` on the
bench_compare data (N = 2048 pairs, 19 layers, d = 640, all six metrics, default CIs), and
so does the matmul floor. The three runs are interleaved, ``--repeats`` times, on one thread.
The script prints the best process CPU time of each and the largest relative difference of
every output column. CPU time, not wall time, because the machine is usually shared.

Run from the repository root:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_compare_ab.py --rev 9e448b3
"""
from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def old_package(rev: str, into: Path) -> None:
    """hub/metrics at ``rev`` as the package ``oldhub`` under ``into`` (imports rewritten)."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "hub/__init__.py", "hub/metrics"],
                         check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(into, filter="data")
    (into / "hub").rename(into / "oldhub")
    for f in (into / "oldhub").rglob("*.py"):
        f.write_text(re.sub(r"\b(from|import) hub\b", r"\1 oldhub", f.read_text()))


def data(L: int, n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """bench_compare.py's states: low-rank structure + noise + a common offset; y = x + noise."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(L, n, 32, generator=g)
    x = z @ (1.5 / 32**0.5 * torch.randn(L, 32, d, generator=g))
    x += torch.randn(L, n, d, generator=g) + 3.0 * torch.randn(L, 1, d, generator=g)
    return x, x + 6.0 * torch.randn(L, n, d, generator=g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", required=True, help="git revision of the old comparator")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=19)
    ap.add_argument("--d", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="compare_ab_"))
    old_package(args.rev, tmp)
    sys.path.insert(0, str(tmp))
    from hub.metrics import compare as new
    from oldhub.metrics import compare as old

    x, y = data(args.layers, args.n, args.d)
    h = args.n // 2

    def floor() -> None:
        for a, b in zip(x, y):
            a[:h] @ a.T, b[:h] @ b.T, a @ b.T

    runs = {"floor": floor, "old": lambda: old(x, y), "new": lambda: new(x, y)}
    best = {k: float("inf") for k in runs}
    out = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            c0 = time.process_time()
            res = fn()
            best[name] = min(best[name], time.process_time() - c0)
            if res is not None:
                out[name] = res
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    f = best["floor"]
    print(f"N={args.n} layers={args.layers} d={args.d}, 1 thread, process CPU time, best of {args.repeats}, load {load}")
    print(f"floor {f:.2f} s | old ({args.rev}) {best['old']:.2f} s = {best['old'] / f:.2f}x | "
          f"new {best['new']:.2f} s = {best['new'] / f:.2f}x | new / old = {best['new'] / best['old']:.3f}")
    for col in ("value", "baseline", "ci_low", "ci_high"):
        a, b = out["old"][col].to_numpy(), out["new"][col].to_numpy()
        rel = np.abs(a - b) / np.maximum(np.abs(a), 1e-12)
        print(f"{col:9s} max relative difference {np.nanmax(rel):.2e}")


if __name__ == "__main__":
    main()
