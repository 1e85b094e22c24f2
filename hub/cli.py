"""The ``semantic-hub`` Hydra application: compose conf/, run one experiment per job.

``semantic-hub --cfg job`` prints the composed config; ``-m`` runs a sweep, each job in its
own directory (``hydra.sweep.dir``/``<num>_<overrides>``), on any Hydra launcher
(``hydra/launcher=local|ray_local|slurm``, see conf/hydra/launcher/). An experiment is a
module in ``experiments/`` with ``run(ctx) -> None``.

Sweeps at scale:

* **resume**: a job is done when its ``report.md`` exists (RunContext.finish writes
  ``results.csv`` then ``report.md``, each atomically). With ``resume=true`` (default) such a
  job is skipped, so rerunning an interrupted sweep with the same ``hydra.sweep.dir`` completes
  only the missing jobs. ``resume=false`` recomputes every job.
* **errors**: an exception in one job of a sweep is written to ``error.txt`` in that job's
  directory and the sweep goes on; at the end :class:`SweepSummary` (a Hydra callback, set in
  conf/config.yaml) prints one line per failed job, writes the cross-run report and exits with
  status 1. A single run (no ``-m``) re-raises as before, after writing ``error.txt``.
* **user errors** (hub.errors.UserError: a bad config value, bad data, a missing file, a device
  that is not there, a bad override): one line ``semantic-hub: error: ...`` on stderr, exit
  status 2, no results; the traceback only with ``HYDRA_FULL_ERROR=1`` or ``verbose=true``.
  Any other exception is a bug and keeps its traceback.
* **logs**: one summary line per job (what ran, how long, where the results are).
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hub.errors import UserError, check_run_config, one_line, user_error
from hub.results import atomic_write_text

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
DATA_DIR = Path(__file__).resolve().parents[1] / "modalities" / "data"
log = logging.getLogger("semantic_hub")
TAG = "[semantic-hub]"


def _pkg_data(name: str) -> str:
    return str(DATA_DIR / name)


if not OmegaConf.has_resolver("pkg_data"):
    OmegaConf.register_new_resolver("pkg_data", _pkg_data)


def _overrides() -> list[str]:
    """The current Hydra job's task overrides ([] outside a Hydra run)."""
    if not HydraConfig.initialized():
        return []
    return [str(o) for o in HydraConfig.get().overrides.task]


def _label(cfg: DictConfig) -> str:
    ov = [o for o in _overrides() if not o.startswith(("hydra.", "progress="))]
    return f"{cfg.experiment.name} on {cfg.model.name}" + (f" [{' '.join(ov)}]" if ov else "")


def run_job(cfg: DictConfig, out: str | Path) -> Path:
    """Run the configured experiment into ``out``; returns the report path."""
    check_run_config(cfg)  # before the heavy imports: a typo fails in a second
    from hub.context import RunContext
    from hub.pairs import split_undefined

    script = cfg.experiment.script
    scripts = [script] if isinstance(script, str) else list(script)  # a list runs in one job, in order
    modules = []
    for name in scripts:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            raise UserError(f"experiment.script={name!r} cannot be imported ({e}); "
                            f"expected a module such as experiments.crosslingual") from e
        if not hasattr(module, "run"):
            raise UserError(f"experiment module {name!r} has no run(ctx) function")
        modules.append(module)
    ctx = RunContext(cfg, Path(out))
    t0 = time.time()
    for module in modules:
        module.run(ctx)
    report = ctx.finish()
    n = len(split_undefined(ctx.results())[0])  # the rows written to results.csv
    cache = f", activation cache {ctx.cache.stats}" if ctx.cache is not None else ""
    print(f"{TAG} done {_label(cfg)}: {n} result rows in {time.time() - t0:.1f}s{cache} -> {report}", flush=True)
    return report


def _clean_job_dir(out: Path) -> None:
    """Remove what an earlier, unfinished attempt may have left: error.txt, temp files."""
    (out / "error.txt").unlink(missing_ok=True)
    for tmp in out.glob("**/.*.tmp"):
        tmp.unlink(missing_ok=True)


def write_error(out: Path, err: BaseException, cfg: DictConfig, seconds: float) -> Path:
    """``error.txt``: what ran, the overrides, the exception and its traceback."""
    text = (f"{_label(cfg)}\nfailed after {seconds:.1f}s\noverrides: {_overrides()}\n\n"
            + "".join(traceback.format_exception(type(err), err, err.__traceback__)))
    return atomic_write_text(out / "error.txt", text)


def run_or_resume(cfg: DictConfig, out: str | Path, raise_errors: bool = True) -> dict[str, Any]:
    """One job of a run or sweep: skip it if done (``resume``), else run it and catch its error.

    Returns a plain dict (picklable for any launcher): ``status`` (done | skipped | failed),
    ``seconds``, ``path`` (report.md or error.txt), ``error``.
    """
    out = Path(out)
    report = out / "report.md"
    if bool(cfg.get("resume", True)) and report.is_file():
        print(f"{TAG} skip {_label(cfg)}: already done -> {report}", flush=True)
        return {"status": "skipped", "seconds": 0.0, "path": str(report), "error": None}
    out.mkdir(parents=True, exist_ok=True)
    _clean_job_dir(out)
    t0 = time.time()
    try:
        path = run_job(cfg, out)
    except Exception as e:  # noqa: BLE001 - one job's failure must not lose the sweep
        seconds = time.time() - t0
        if raise_errors and user_error(e) is not None:  # a single run: main() prints the one line
            raise
        err = write_error(out, e, cfg, seconds)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        print(f"{TAG} FAILED {_label(cfg)} after {seconds:.1f}s: {type(e).__name__}: {first} -> {err}",
              flush=True)
        if raise_errors:
            raise
        return {"status": "failed", "seconds": seconds, "path": str(err), "error": f"{type(e).__name__}: {first}"}
    return {"status": "done", "seconds": time.time() - t0, "path": str(path), "error": None}


class SweepSummary(Callback):
    """At the end of a multirun: status of every job under the sweep dir, the cross-run report,
    and exit status 1 if any job failed (its ``error.txt`` is named)."""

    def __init__(self, report: bool = True) -> None:
        self.report = report

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from hub.sweep_report import build, scan_jobs

        sweep = Path(str(config.hydra.sweep.dir))
        jobs = scan_jobs(sweep)
        counts = {s: sum(j.status == s for j in jobs) for s in ("done", "failed", "incomplete")}
        print(f"{TAG} sweep {sweep}: {len(jobs)} jobs, " + ", ".join(f"{n} {s}" for s, n in counts.items()),
              flush=True)
        for j in jobs:
            if j.status == "failed":
                print(f"{TAG}   failed: {j.rel} -> {j.dir / 'error.txt'}: {j.error}", flush=True)
        if self.report and counts["done"]:
            try:
                index = build(sweep)
                print(f"{TAG} sweep report -> {index}", flush=True)
            except Exception as e:  # noqa: BLE001 - the jobs' own results are already safe
                print(f"{TAG} sweep report failed: {type(e).__name__}: {e} "
                      f"(retry with: semantic-hub-report {sweep})", flush=True)
        if counts["failed"]:
            sys.exit(1)


_ONE_LINE = {"on": False}  # set by main(): user errors as one line (not under HYDRA_FULL_ERROR / verbose)


class _UserExit(BaseException):
    """Carries a single run's user error past Hydra's job runner (which would print more)."""

    def __init__(self, err: UserError) -> None:
        super().__init__(str(err))
        self.err = err


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> dict[str, Any]:
    hc = HydraConfig.get()
    single = hc.mode != RunMode.MULTIRUN
    try:
        return run_or_resume(cfg, hc.runtime.output_dir, raise_errors=single)
    except Exception as e:
        ue = user_error(e)
        if single and ue is not None and _ONE_LINE["on"]:
            raise _UserExit(ue) from e
        raise


def _verbose(argv: list[str]) -> bool:
    """Tracebacks for user errors too: ``HYDRA_FULL_ERROR=1`` or a ``verbose=true`` override."""
    flags = {f"{p}verbose={v}" for p in ("", "+", "++") for v in ("true", "True", "1", "yes")}
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or any(a in flags for a in argv)


def _config_line(e: BaseException) -> str:
    """One line for an error Hydra found while composing the config (a bad override or choice)."""
    text = str(e) + (f"\n{e.__cause__}" if e.__cause__ is not None else "")
    out, listing = "", False
    for raw in text.split("\nConfig search path")[0].splitlines():  # the search path is for developers
        line = raw.strip().rstrip(".") if raw.strip().endswith(".") else raw.strip()
        if not line or line.startswith("To append to your config use"):
            continue
        if out.endswith(":"):
            out, listing = f"{out} {line}", True
        elif listing and raw[:1].isspace():
            out += f", {line}"
        else:
            out, listing = (f"{out}; {line}" if out else line), False
    override = getattr(e, "override", None)
    if override is not None:  # OverrideParseException: the override's syntax
        out = out.split("; See https://")[0]
        return one_line(UserError(f"cannot parse the override {override!r} ({out}), on the command line; "
                                  "expected key=value in Hydra's override grammar (quote lists and dicts)"))
    return one_line(UserError(f"{out}, in the command-line overrides; expected an existing key or option "
                              "(semantic-hub --cfg job shows the config; +key=value adds a new key)"))


def main() -> None:
    """``semantic-hub``: one line and exit status 2 for a user error, the traceback for a bug."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    if not CONF_DIR.is_dir():
        sys.exit(one_line(UserError(f"config directory {CONF_DIR} not found, beside the installed package; "
                                    "expected an editable install (pip install -e .) from a clone of the repository")))
    if _verbose(sys.argv[1:]):
        _hydra_main()
        return
    _ONE_LINE["on"] = True
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing; main decides below
    try:
        _hydra_main()
    except _UserExit as e:
        print(one_line(e.err), file=sys.stderr, flush=True)
        sys.exit(2)
    except (ConfigCompositionException, MissingConfigException, OverrideParseException) as e:
        print(_config_line(e), file=sys.stderr, flush=True)
        sys.exit(2)
    except Exception as e:
        ue = user_error(e)
        if ue is None:
            raise  # a bug: the full traceback
        print(one_line(ue), file=sys.stderr, flush=True)
        sys.exit(2)
    finally:
        _ONE_LINE["on"] = False
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


if __name__ == "__main__":
    main()
