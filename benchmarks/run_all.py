"""Run every benchmark and print ONE table: each row a ratio measured within one run, with the
absolute times beside it, its target, and peak memory.

    make bench                      (installs the [bench] extra, then runs this)
    .venv/bin/python benchmarks/run_all.py [--only capture,cache] [--skip regions] [--quick]

Each suite runs in its own child process (so its peak RSS is its own; a crash loses one suite),
importing the script's ``main``. Rows come from ``main``'s return value, else from the
``print_table`` calls it makes, else from parsing its printed table (bench_compare,
bench_regions). Logs and the table (Markdown) are written to outputs/bench/.
``peak MB``: a row's own peak RSS rise where the script measures it, else the suite process's
peak RSS (marked ``proc``).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import inspect
import io
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "outputs" / "bench"
MARK = "@@SEMANTIC_HUB_ROWS@@"

# suite -> (module, argv for main, argv in --quick mode)
SUITES: dict[str, tuple[str, list[str], list[str]]] = {
    "capture": ("benchmarks.bench_capture", [], ["--repeats", "1"]),
    "libraries": ("benchmarks.bench_libraries", [], ["--repeats", "1"]),
    "lens": ("benchmarks.bench_lens", [], ["--repeats", "1"]),
    "compare": ("benchmarks.bench_compare", [], ["--repeats", "1", "--n", "512"]),
    "cache": ("benchmarks.bench_cache", [], ["--items", "8", "--no-job"]),
    "regions": ("benchmarks.bench_regions", [], ["tokens=128"]),
    "dtype": ("benchmarks.bench_dtype", [], ["--repeats", "1"]),
    "causal": ("benchmarks.bench_causal", [], ["--repeats", "1", "--tokens", "256"]),
}
COLUMNS = ["suite", "what", "seconds", "vs", "ref_s", "ratio", "target", "ok", "peak MB", "note"]


# --------------------------------------------------------------------------- child side
def run_child(module: str, argv: list[str]) -> None:
    """Run one benchmark's main in this process; print its rows as JSON after MARK."""
    import benchmarks.common as common

    tables: list[list[dict]] = []
    real_print_table = common.print_table

    def recording(title, rows):
        tables.append([dict(r) for r in rows])
        real_print_table(title, rows)

    common.print_table = recording
    mod = importlib.import_module(module)
    if hasattr(mod, "print_table"):
        mod.print_table = recording
    buf = io.StringIO()
    sys.argv = [module, *argv]
    with contextlib.redirect_stdout(_Tee(sys.stdout, buf)):
        takes_argv = bool(inspect.signature(mod.main).parameters)
        ret = mod.main(argv) if takes_argv else mod.main()  # main() alone reads sys.argv
    rows = ret if isinstance(ret, list) else [r for t in tables for r in t]
    if not rows:
        rows = PARSERS.get(module.rsplit(".", 1)[-1], lambda s: [])(buf.getvalue())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(MARK + json.dumps({"rows": rows, "proc_peak_mb": peak}, default=_jsonable))


class _Tee(io.TextIOBase):
    def __init__(self, *streams) -> None:
        self.streams = streams

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self) -> None:
        for st in self.streams:
            st.flush()


def _jsonable(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def _parse_compare(text: str) -> list[dict]:
    """bench_compare prints 'name  wall  cpu  ref/ours' lines and an agreement line."""
    rows, ref = [], None
    for line in text.splitlines():
        m = re.match(r"^(?P<what>\S.*?)\s{2,}(?P<wall>\d+\.\d+)\s+(?P<cpu>\d+\.\d+)\s+(?P<x>\d+\.\d+)\s*$", line)
        if m:
            rows.append({"what": m["what"], "seconds": float(m["wall"]), "cpu_s": float(m["cpu"])})
            if m["what"].startswith(("numpy", "reference")):
                ref = float(m["wall"])
    agree = next((ln for ln in text.splitlines() if ln.startswith("agreement")), "")
    for r in rows:
        if ref and not r["what"].startswith(("numpy", "reference")):
            r.update(ref_seconds=ref, ratio=r["seconds"] / ref, vs="per-layer reference")
    if rows:
        first = rows[0]
        first.update(target="<= 2 s", ok=first["seconds"] <= 2.0, note=agree)
        fl = re.search(r"^matmul floor .*?: (\d+\.\d+) s", text, re.M)
        if fl:
            floor = float(fl[1])
            rows.append({"what": "compare(), default CIs, vs its matmul floor", "seconds": first["seconds"],
                         "ref_seconds": floor, "ratio": first["seconds"] / floor, "vs": "x x', y y' (half), x y'",
                         "note": f"the floor alone is {floor / 2.0:.2f} x the 2 s target"})
        md = re.search(r"^model time: (\d+\.\d+) s \(([^)]*)\)", text, re.M)
        if md:
            rows.append({"what": "compare(), default CIs, vs the model time", "seconds": first["seconds"],
                         "ref_seconds": float(md[1]), "ratio": first["seconds"] / float(md[1]),
                         "vs": "capture of the same pairs", "note": md[2]})
    return rows


def _parse_regions(text: str) -> list[dict]:
    """bench_regions prints 'step  seconds  [s/1k tok]  peak RSS GB  [x forward]' lines."""
    rows, on = [], False
    for line in text.splitlines():
        if line.startswith("step"):
            on = True
            continue
        if on and line.strip():
            vals = re.findall(r"\d+\.\d+", line[24:])
            if not vals:
                continue
            r = {"what": line[:24].strip(), "seconds": float(vals[0]), "peak_mb": None,
                 "note": f"peak RSS {float(vals[-2] if len(vals) == 4 else vals[-1]):.2f} GB"}
            if len(vals) == 4:
                r.update(ratio=float(vals[3]), vs="forward / token")
            rows.append(r)
    return rows


PARSERS = {"bench_compare": _parse_compare, "bench_regions": _parse_regions}


# -------------------------------------------------------------------------- parent side
def run_suite(name: str, quick: bool, log_dir: Path) -> tuple[list[dict], float | None, str]:
    module, argv, quick_argv = SUITES[name]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", module, "--", *(quick_argv if quick else argv)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    t = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    (log_dir / f"{name}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return [{"what": f"FAILED (exit {proc.returncode}): {err}"}], None, f"{time.time() - t:.0f}s"
    data = json.loads(line[len(MARK):])
    return data["rows"], data["proc_peak_mb"], f"{time.time() - t:.0f}s"


def normalise(suite: str, r: dict, proc_peak: float | None) -> dict:
    ratio_key = next((k for k in r if k.startswith("ratio")), None)
    vs = r.get("vs") or ({"ratio_to_body": "body", "ratio_to_floor": "floor"}.get(ratio_key, "") if ratio_key else "")
    peak = r.get("peak_mb")
    notes = [str(r[k]) for k in ("note",) if r.get(k)]
    if r.get("max_abs_diff") is not None:
        notes.append(f"max|diff| vs HF {float(r['max_abs_diff']):.1e}")
    return {"suite": suite, "what": r.get("what", ""), "seconds": r.get("seconds", r.get("ours_s")), "vs": vs,
            "ref_s": r.get("ref_seconds", r.get("ref_s")), "ratio": r.get(ratio_key) if ratio_key else None,
            "target": r.get("target", ""), "ok": {True: "yes", False: "NO"}.get(r.get("ok"), ""),
            "peak MB": f"{peak:.0f}" if isinstance(peak, (int, float)) else
            (f"proc {proc_peak:.0f}" if proc_peak else ""), "note": "; ".join(notes)}


def render(rows: list[dict], fmt: str = "text") -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return "" if v is None else str(v)

    cells = [[cell(r.get(c)) for c in COLUMNS] for r in rows]
    if fmt == "md":
        out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
        return "\n".join(out)
    width = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    out = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, width))]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, width)) for row in cells]
    return "\n".join(out)


def machine() -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), load average {load:.1f} at start")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help=f"comma list of suites: {', '.join(SUITES)}")
    ap.add_argument("--skip", default="", help="comma list of suites to leave out")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and smaller workloads (a smoke run)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args(argv)
    if args.child:
        run_child(args.child, [a for a in rest if a != "--"])
        return 0
    names = [n for n in (args.only.split(",") if args.only else SUITES) if n and n not in args.skip.split(",")]
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        ap.error(f"unknown suites {unknown}; known: {list(SUITES)}")
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    log_dir = OUT / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    header = f"semantic-hub benchmarks, {dt.date.today().isoformat()}: {machine()}"
    print(header, flush=True)
    table: list[dict] = []
    for n in names:
        print(f"  running {n} ...", end=" ", flush=True)
        rows, peak, took = run_suite(n, args.quick, log_dir)
        print(took, flush=True)
        table += [normalise(n, r, peak) for r in rows]
    print()
    print(render(table))
    md = f"{header}\n\n{render(table, 'md')}\n"
    (log_dir / "table.md").write_text(md)
    print(f"\nlogs and table.md: {log_dir}")
    missed = [r["what"] for r in table if r["ok"] == "NO"]
    if missed:
        print(f"targets missed ({len(missed)}): " + "; ".join(missed))
    return 1 if any(r["what"].startswith("FAILED") for r in table) else 0


if __name__ == "__main__":
    sys.exit(main())
