"""Cross-run report of a sweep: one table, comparative figures, an index page.

    semantic-hub-report multirun/2025-01-01_12-00-00 [--out DIR] [--no-figures]

Every job directory under the sweep dir (one with ``.hydra/``, ``report.md`` or ``error.txt``)
is scanned. A job is *done* when its ``report.md`` exists, *failed* when it left an
``error.txt``, else *incomplete* (killed, or still running). The ``results.csv`` of done jobs are
concatenated into ``sweep_results.csv`` with the job's Hydra overrides as columns (``job``,
``experiment``, then e.g. ``model``, ``modality``, ``metric.k``; an override that clashes with a
results column of different content is named ``override.<key>``). Per experiment and metric, a
figure draws a line per value of the overrides that vary across its jobs (a line per model, or
per modality...) and per value of every identifying column (``lang``, ``src``, ``tgt``,
``direction``, ``pair``, ``set``, ``condition``: the language whose probability is read, the
pair compared), never a mean over those; panels per ``task``; the x axis is the layer, or
the relative depth layer / L when the models differ in depth. ``index.md`` links every job's
report (or error) and shows the figures. All files are written atomically.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from hub.results import atomic_write_text

_MARKERS = ("report.md", "error.txt")
# overrides that do not change results (left out of the table, as of the job dir names)
_NOT_COLUMNS = {"progress", "resume", "cache.enabled", "cache.dir"}
FIG_DIR = "figures"
_DEPTH = "relative depth (layer / L)"


@dataclass
class Job:
    """One job directory of a sweep and what it left."""

    dir: Path
    rel: str
    overrides: dict[str, str] = field(default_factory=dict)
    experiment: str = "unknown"
    status: str = "incomplete"  # done | failed | incomplete
    error: str | None = None
    elapsed_s: float | None = None


def _num_key(rel: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", rel))


def _parse_override(o: str) -> tuple[str, str] | None:
    if "=" not in o:
        return None
    k, v = o.split("=", 1)
    k = k.lstrip("+~")
    if k.startswith(("hydra.", "hydra/")) or k in _NOT_COLUMNS:
        return None
    return k, v


def _read_job(d: Path, sweep: Path) -> Job:
    from omegaconf import OmegaConf

    rel = d.relative_to(sweep).as_posix() if d != sweep else "."
    job = Job(d, rel)
    ov = d / ".hydra" / "overrides.yaml"
    if ov.is_file():
        try:
            items = [_parse_override(str(o)) for o in OmegaConf.to_container(OmegaConf.load(ov))]
            job.overrides = dict(i for i in items if i is not None)
        except Exception:  # noqa: BLE001 - a damaged overrides file only loses the columns
            pass
    cfg = d / ".hydra" / "config.yaml"
    if cfg.is_file():
        try:
            job.experiment = str(OmegaConf.load(cfg).experiment.name)
        except Exception:  # noqa: BLE001
            job.experiment = job.overrides.get("experiment", "unknown")
    else:
        job.experiment = job.overrides.get("experiment", "unknown")
    if (d / "report.md").is_file():
        job.status = "done"
        m = re.search(r"^- elapsed_s: ([\d.]+)", (d / "report.md").read_text(encoding="utf-8"), re.M)
        job.elapsed_s = float(m.group(1)) if m else None
    elif (d / "error.txt").is_file():
        job.status = "failed"
        lines = (d / "error.txt").read_text(encoding="utf-8").strip().splitlines()
        job.error = lines[-1][:300] if lines else "error"
    return job


def scan_jobs(sweep: str | Path) -> list[Job]:
    """Every job directory under ``sweep`` with its overrides and status, in job order."""
    sweep = Path(sweep)
    if not sweep.is_dir():
        raise FileNotFoundError(f"sweep directory {sweep} does not exist")
    dirs = {p.parent for m in _MARKERS for p in sweep.rglob(m)}
    dirs |= {p.parent for p in sweep.rglob(".hydra") if p.is_dir()}
    dirs = {d for d in dirs if FIG_DIR not in d.relative_to(sweep).parts}
    jobs = [_read_job(d, sweep) for d in dirs]
    return sorted(jobs, key=lambda j: _num_key(j.rel))


def collect(jobs: list[Job]) -> pd.DataFrame:
    """results.csv of every done job, with ``job``, ``experiment`` and override columns."""
    frames = []
    for j in jobs:
        p = j.dir / "results.csv"
        if j.status != "done" or not p.is_file():
            continue
        df = pd.read_csv(p)
        df.insert(0, "experiment", j.experiment)
        df.insert(0, "job", j.rel)
        for k, v in j.overrides.items():
            if k == "experiment":
                continue
            if k not in df.columns:
                df[k] = v
            else:
                col = df[k]
                same = col.isna() | (col.astype(str) == v)
                if same.all():
                    df[k] = col.where(col.notna(), v)
                else:
                    df[f"override.{k}"] = v
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _varying(jobs: list[Job]) -> list[str]:
    keys = sorted({k for j in jobs for k in j.overrides if k != "experiment"})
    return [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "x"


# columns that say what a row measures (which language's probability, which pair or
# direction): a cross-run figure never averages over them, it draws a line per value
IDENTIFYING = ("lang", "src", "tgt", "direction", "pair", "set", "condition", "lens")
_MAX_LINES = 20  # more lines than this in one panel: facet by an identifying column


def _text(v) -> str:
    return "" if pd.isna(v) else str(v)


def identify(dm: pd.DataFrame, panels: str | None, facet: bool = True) -> tuple[pd.DataFrame, str | None]:
    """Name every line by what it is: each identifying column that varies within a line (and
    panel) is appended to the ``line`` column (``src=de · lang=en``), so no later mean mixes
    its values. With more than ``_MAX_LINES`` lines and no panels, one identifying column (at
    most 16 values) becomes the panels. Returns the frame and the panel column."""
    within = ["line"] + ([panels] if panels else [])
    ident = [c for c in IDENTIFYING + (("task",) if panels != "task" else ())
             if c in dm.columns and c != panels and dm.groupby(within, dropna=False)[c].nunique().max() > 1]
    if facet and panels is None and ident and dm.groupby(["line"] + ident, dropna=False).ngroups > _MAX_LINES:
        col = next((c for c in ident if dm[c].nunique() <= 16), None)
        if col is not None:
            panels, ident = col, [c for c in ident if c != col]
    if ident:
        names = dm[ident].apply(lambda r: " · ".join(f"{c}={_text(r[c])}" for c in ident if _text(r[c])), axis=1)
        dm = dm.assign(line=[" · ".join(t for t in (a, b) if t) for a, b in zip(dm["line"], names)])
    return dm.assign(line=dm["line"].replace("", "all")), panels


def curve_table(dm: pd.DataFrame, x: str, panels: str | None) -> tuple[pd.DataFrame, str | None, int]:
    """Rows of one metric -> one row per (line, panel, x), never averaged over an identifying
    column (see :func:`identify`; ``dm`` has a ``line`` column naming its job). Returns the table
    (``line``, ``x``, panels, ``value``, ``baseline``, ``ci_*`` where nothing is averaged), the
    panel column and the largest number of rows averaged into one point (1: none)."""
    dm, panels = identify(dm, panels)
    keys = ["line", x] + ([panels] if panels else [])
    agg = {"value": "mean"} | ({"baseline": "mean"} if "baseline" in dm.columns else {})
    g = dm.groupby(keys, dropna=False).agg(agg)
    per_point = int(dm.groupby(keys, dropna=False).size().max())
    if per_point == 1 and {"ci_low", "ci_high"} <= set(dm.columns):
        g = g.join(dm.groupby(keys, dropna=False)[["ci_low", "ci_high"]].first())
    return g.reset_index(), panels, per_point


def _job_labels(jobs: list[Job], vary: list[str], panels: str | None) -> dict[str, str]:
    """Each job's line name: its varying overrides (the panel key left out), else its model."""
    shown = [k for k in vary if k != panels]
    return {j.rel: (", ".join(f"{k}={j.overrides.get(k)}" for k in shown) if vary else
                    str(j.overrides.get("model", j.rel))) for j in jobs}


def figures(df: pd.DataFrame, jobs: list[Job], out: Path) -> dict[str, list[Path]]:
    """Comparative figures per experiment and metric: a line per varying-override value and per
    value of every identifying column (language, pair, direction...), never their mean."""
    from hub.plots import layer_curves

    made: dict[str, list[Path]] = {}
    if df.empty:
        return made
    for exp, dfe in df.groupby("experiment", sort=True):
        ejobs = [j for j in jobs if j.experiment == exp and j.status == "done"]
        vary = _varying(ejobs)
        layer = pd.to_numeric(dfe["layer"], errors="coerce")
        dfe = dfe.assign(layer=layer, value=pd.to_numeric(dfe["value"], errors="coerce"))
        layered = dfe[layer.notna()]
        depth = layered.groupby("job")["layer"].transform("max")
        relative = layered.groupby("job")["layer"].max().nunique() > 1
        layered = layered.assign(**{_DEPTH: layered["layer"] / depth.where(depth > 0, 1)})
        x = _DEPTH if relative else "layer"
        for metric, dm in layered.groupby("metric", sort=True):
            panels = "task" if "task" in dm.columns and 1 < dm["task"].nunique() <= 8 else None
            dm = dm.assign(line=dm["job"].map(_job_labels(ejobs, vary, panels)).fillna(dm["job"]))
            g, fpanels, per_point = curve_table(dm, x, panels)
            path = out / FIG_DIR / f"{_slug(exp)}_{_slug(str(metric))}.png"
            title = f"{exp}: {metric}" + ("" if per_point == 1 else f" (each point: mean of {per_point} rows)")
            try:
                made.setdefault(exp, []).append(layer_curves(
                    g, path, group="line", panels=fpanels, x=x, ylabel=str(metric), title=title,
                    baseline_col="baseline" if "baseline" in g.columns else None))
            except ValueError as e:  # too many lines to tell apart: the table still has them
                print(f"semantic-hub-report: figure {path.name} left out: {e}", file=sys.stderr)
        flat = dfe[layer.isna()]
        if len(flat):
            flat = flat.assign(line=flat["job"].map(_job_labels(ejobs, vary, None)).fillna(flat["job"]))
            made.setdefault(exp, []).append(_bars(flat, out / FIG_DIR / f"{_slug(exp)}_summary.png", exp))
    return made


def _bars(df: pd.DataFrame, path: Path, title: str) -> Path:
    """Metrics without a layer: one panel per metric, a bar per line and identifying value
    (mean over the remaining rows)."""
    import matplotlib.pyplot as plt

    from hub.plots import save_fig, sorted_keys

    metrics = sorted(df["metric"].astype(str).unique())[:12]
    cols = min(4, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, m in zip(axes.flat, metrics):
        dm, _ = identify(df[df["metric"].astype(str) == m], None, facet=False)
        s = dm.groupby("line")["value"].mean()
        s = s.reindex(sorted_keys(s.index))
        ax.bar(range(len(s)), s.to_numpy(), color=[f"C{i % 10}" for i in range(len(s))])
        ax.set_xticks(range(len(s)), [str(i) for i in s.index], rotation=30, ha="right", fontsize=7)
        ax.set_title(m, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{title}: metrics without a layer")
    fig.tight_layout()
    return save_fig(fig, path)


def _link(rel: str, name: str) -> str:
    target = name if rel == "." else f"{rel}/{name}"
    return f"[{name}]({quote(target)})"


def index_page(sweep: Path, jobs: list[Job], df: pd.DataFrame, figs: dict[str, list[Path]], out: Path) -> str:
    n = {s: sum(j.status == s for j in jobs) for s in ("done", "failed", "incomplete")}
    lines = [f"# Sweep report: {sweep}", "",
             f"- jobs: {len(jobs)} ({n['done']} done, {n['failed']} failed, {n['incomplete']} incomplete)",
             f"- table: [sweep_results.csv](sweep_results.csv), {len(df)} rows" if len(df) else "- table: no results",
             "", "## Jobs", "", "| job | experiment | overrides | status | seconds | output |", "|---|---|---|---|---|---|"]
    for j in jobs:
        ov = " ".join(f"{k}={v}" for k, v in j.overrides.items()).replace("|", "\\|")
        sec = f"{j.elapsed_s:.1f}" if j.elapsed_s is not None else ""
        link = _link(j.rel, "report.md") if j.status == "done" else (
            _link(j.rel, "error.txt") + f" {(j.error or '').replace('|', '/')}" if j.status == "failed" else "")
        lines.append(f"| {j.rel} | {j.experiment} | {ov} | {j.status} | {sec} | {link} |")
    if figs:
        lines += ["", "## Figures", ""]
        for exp, paths in figs.items():
            lines += [f"### {exp}", ""]
            lines += [f"![{p.stem}]({quote(p.relative_to(out).as_posix())})" for p in paths] + [""]
    return "\n".join(lines) + "\n"


def build(sweep: str | Path, out: str | Path | None = None, with_figures: bool = True) -> Path:
    """Write ``sweep_results.csv``, ``figures/`` and ``index.md`` for a sweep; returns index.md."""
    sweep = Path(sweep)
    out = Path(out) if out is not None else sweep
    jobs = scan_jobs(sweep)
    if not jobs:
        raise FileNotFoundError(f"{sweep}: no job directories (with .hydra/, report.md or error.txt) found")
    df = collect(jobs)
    if len(df):
        atomic_write_text(out / "sweep_results.csv", df.to_csv(index=False))
    figs = figures(df, jobs, out) if with_figures else {}
    text = index_page(sweep, jobs, df, figs, out)
    from hub.depth_report import build_depth

    depth = build_depth(df, jobs, out, with_figures=with_figures)
    if depth is not None:  # several models: the relative-depth comparison, linked first
        text = text.replace("\n## Jobs", f"\n- models compared on relative depth: [depth.md]({depth.name})\n\n## Jobs", 1)
    return atomic_write_text(out / "index.md", text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="semantic-hub-report", description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", help="a sweep directory (hydra.sweep.dir) or any directory of job dirs")
    ap.add_argument("--out", default=None, help="where to write the report (default: the sweep dir)")
    ap.add_argument("--no-figures", action="store_true", help="only the table and the index page")
    args = ap.parse_args(argv)
    try:
        index = build(args.sweep_dir, args.out, with_figures=not args.no_figures)
    except FileNotFoundError as e:
        print(f"semantic-hub-report: {e}", file=sys.stderr)
        return 2
    jobs = scan_jobs(args.sweep_dir)
    bad = [j for j in jobs if j.status != "done"]
    print(f"{len(jobs)} jobs ({len(jobs) - len(bad)} done) -> {index}")
    for j in bad:
        print(f"  {j.status}: {j.rel}" + (f": {j.error}" if j.error else ""))
    # a failed job makes the command fail (scripts and CI notice); incomplete jobs may still run
    return 1 if any(j.status == "failed" for j in jobs) else 0


if __name__ == "__main__":
    sys.exit(main())
