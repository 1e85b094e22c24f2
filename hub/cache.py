"""On-disk activation cache: captured states as safetensors, keyed by everything that fixes them.

A rerun that only changes metrics, plots or reports reads the states instead of running the
model. The key is a hash of the model's identity (class, config, dtype, attention kernel and a
weights checksum), the input token ids, the BOS id, positions, spans, layers, the output dtype,
any extra model inputs (pixel values, audio features, encoder states ...) and the version of
the code that captured them (:func:`code_version`: package, torch and transformers versions and
a hash of the capture code's source), so an entry written by other code is a miss. The weights
checksum is computed once per model: the sha256 list of the store's ``STORE.json`` when the
model came from the offline store, else a hash of the state-dict bytes. A cheap probe (parameter version counters and a strided sample of
every parameter) notices in-place weight edits afterwards; the checksum is then recomputed from
the bytes, so an edited model never reads states of the original one.

Entries are written to a temp file and renamed into place, and carry a checksum of their tensor
bytes in the safetensors metadata: a corrupted or partial entry is detected, deleted and
recomputed, never read. Captures while hooks are attached to the model (interventions) bypass
the cache, since hooks may change the states; transformers' own output-recording hooks (left
on e.g. llava's vision tower after the first forward; they change nothing) do not count.

Layout: ``<dir>/<key[:2]>/<key>.safetensors``. ``<dir>`` is ``$SEMANTIC_HUB_CACHE_DIR`` when set
(the test suite gives each test its own; the model store stays where it is), else ``activations/`` beside the model store (``$SEMANTIC_HUB_HOME/activations``, else
``$XDG_CACHE_HOME/semantic-hub/activations``, else ``~/.cache/semantic-hub/activations``).
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
import secrets
import sys
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

FORMAT = "1"
_SUFFIX = ".safetensors"
_PROBE_SAMPLES = 1024  # entries sampled per parameter by the in-place-edit probe
ENV_DIR = "SEMANTIC_HUB_CACHE_DIR"
# modules whose forward hooks only record outputs (transformers installs them on the first
# forward, e.g. on llava's vision tower, and leaves them there); they never change states
_RECORDING_HOOK_MODULES = ("transformers.utils.output_capturing",)


def default_dir() -> Path:
    """``$SEMANTIC_HUB_CACHE_DIR``, else ``activations/`` beside the offline model store's root
    (read at call time)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    from hub.store import store_root

    return store_root().parent / "activations"


# -------------------------------------------------------------------------- code version
def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=None)
def _capture_modules(cls: type) -> tuple[str, ...]:
    """The project modules whose code fixes what ``cls.capture`` returns: the modules of ``cls``
    and its project base classes, plus the project modules those import names from (positions,
    families ...), found from their globals so a moved module is still covered."""
    root = __name__.split(".")[0]
    mods = {c.__module__ for c in cls.__mro__ if c.__module__.split(".")[0] == root}
    for name in list(mods):
        for obj in vars(sys.modules[name]).values():
            m = getattr(obj, "__module__", None) if callable(obj) else None
            if isinstance(m, str) and m.split(".")[0] == root:
                mods.add(m)
    return tuple(sorted(mods))


@functools.lru_cache(maxsize=None)
def _code_version(cls: type) -> str:
    h = hashlib.sha256()
    for dist in ("semantic-hub", "torch", "transformers"):
        h.update(f"{dist}={_version(dist)}|".encode())
    for name in _capture_modules(cls):
        try:
            src = inspect.getsource(sys.modules[name])
        except (OSError, TypeError):  # no source (frozen/zipped): fall back to the module name
            src = "<no source>"
        h.update(f"{name}|{len(src)}|".encode())
        h.update(src.encode())
    return h.hexdigest()[:16]


def code_version(hm: Any) -> str:
    """Version of the code that captures ``hm``'s states: the semantic-hub, torch and
    transformers versions and a hash of the source of the capture code (:func:`_capture_modules`).
    Part of every cache key, so a code change never reads states the old code wrote."""
    return _code_version(type(hm))


# ------------------------------------------------------------------------------- hashing
def _tensor_bytes(t: Tensor) -> memoryview:
    t = t.detach().cpu().contiguous().reshape(-1)
    return memoryview(t.view(torch.uint8).numpy())


def _update_tensor(h: Any, name: str, t: Tensor) -> None:
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(_tensor_bytes(t))


def tensors_digest(tensors: Mapping[str, Tensor]) -> str:
    """Checksum of named tensors (names, dtypes, shapes and bytes), in name order."""
    h = hashlib.blake2b(digest_size=20)
    for name in sorted(tensors):
        _update_tensor(h, name, tensors[name])
    return h.hexdigest()


def state_dict_digest(model: torch.nn.Module) -> str:
    """Hash of every parameter and buffer (the slow, always-correct weights checksum)."""
    h = hashlib.blake2b(digest_size=20)
    for name, t in sorted(model.state_dict(keep_vars=False).items()):
        _update_tensor(h, name, t)
    return h.hexdigest()


def _store_digest(model: torch.nn.Module) -> str | None:
    """Hash of the sha256 list in STORE.json when the model was loaded from the offline store."""
    from hub.store import MANIFEST

    src = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", "")
    manifest = Path(str(src)) / MANIFEST if src else None
    if manifest is None or not manifest.is_file():
        return None
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        items = sorted((rel, meta["sha256"]) for rel, meta in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


_VIEWS: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, list[Tensor]]]" = weakref.WeakKeyDictionary()


@torch.no_grad()
def weights_probe(model: torch.nn.Module) -> tuple:
    """Cheap fingerprint of the current weights (a few ms): parameter storages, version counters
    (in-place ops bump them) and, for edits through ``.data`` that do not, the norms of an odd-
    strided sample of every parameter, raw and shifted by 1 (so sums and signs count too)."""
    params = list(model.parameters())
    ptrs = tuple(p.data_ptr() for p in params)
    cached = _VIEWS.get(model)
    if cached is None or cached[0] != ptrs:
        views = [p.detach().reshape(-1)[::max(1, p.numel() // _PROBE_SAMPLES) | 1] for p in params]
        _VIEWS[model] = cached = (ptrs, views)
    views = cached[1]
    if not views:
        return ptrs, (), ()
    norms = torch.stack(torch._foreach_norm(views) + torch._foreach_norm(torch._foreach_add(views, 1.0)))
    return ptrs, tuple(p._version for p in params), tuple(norms.tolist())


def _config_identity(model: torch.nn.Module) -> dict:
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    d = cfg.to_dict()
    return {k: v for k, v in d.items() if not k.startswith("_") and k != "transformers_version"} | {
        "attn": getattr(cfg, "_attn_implementation", None)}


@dataclass
class _Identity:
    digest: str
    probe: tuple
    source: str  # "store" or "state_dict"


_IDENTITIES: "weakref.WeakKeyDictionary[torch.nn.Module, _Identity]" = weakref.WeakKeyDictionary()


def model_identity(model: torch.nn.Module) -> str:
    """Identity hash of a model (class, config, dtypes, weights); weights hashed once per model."""
    probe = weights_probe(model)
    known = _IDENTITIES.get(model)
    if known is None or known.probe != probe:
        if known is None:
            store = _store_digest(model)
            weights, source = (store, "store") if store else (state_dict_digest(model), "state_dict")
        else:  # edited in place since it was fingerprinted: hash the bytes
            log.info("weights of %s changed in place; re-hashing them for the activation cache",
                     type(model).__name__)
            weights, source = state_dict_digest(model), "state_dict"
        dtypes = sorted({str(p.dtype) for p in model.parameters()})
        ident = json.dumps({"class": type(model).__name__, "config": _config_identity(model), "dtypes": dtypes,
                            "weights": weights}, sort_keys=True, default=str)
        known = _Identity(hashlib.sha256(ident.encode()).hexdigest(), probe, source)
        _IDENTITIES[model] = known
    return known.digest


def _plain(x: Any) -> Any:
    """JSON-able form of positions/spans (tensors and numpy ints to lists and ints)."""
    if isinstance(x, Tensor):
        return x.tolist()
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return x.tolist()
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _changes_nothing(hook: Any) -> bool:
    """A hook of transformers' output recording (see ``_RECORDING_HOOK_MODULES``)."""
    return getattr(hook, "__module__", None) in _RECORDING_HOOK_MODULES


def _has_hooks(model: torch.nn.Module) -> bool:
    """Whether any forward (pre-)hook that may change states is attached (globally or to a module
    of ``model``); transformers' output-recording hooks are not counted."""
    from torch.nn.modules import module as m

    if m._global_forward_hooks or m._global_forward_pre_hooks:
        return True
    return any(not _changes_nothing(fn) for mod in model.modules()
               for fn in (*mod._forward_hooks.values(), *mod._forward_pre_hooks.values()))


# --------------------------------------------------------------------------------- cache
@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    corrupt: int = 0
    bypassed: int = 0

    def __str__(self) -> str:
        s = f"{self.hits} hits, {self.misses} misses"
        if self.corrupt:
            s += f", {self.corrupt} corrupt entries recomputed"
        if self.bypassed:
            s += f", {self.bypassed} bypassed (hooks attached)"
        return s


@dataclass
class ActivationCache:
    """Captured states on disk. ``HubModel.capture`` consults it when ``hm.cache`` is set."""

    root: Path = field(default_factory=default_dir)
    stats: CacheStats = field(default_factory=CacheStats)
    _code: dict[str, str] = field(default_factory=dict, repr=False)  # key -> code version

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser()

    # ------------------------------------------------------------------ keys
    def key(self, hm: Any, ids: Sequence[Sequence[int]], layers: Sequence[int], positions: Any,
            spans: Any = None, dtype: torch.dtype = torch.float32, extra: Sequence[dict] | None = None
            ) -> str | None:
        """The entry key of one capture call, or None when it must not be cached (hooks attached)."""
        if _has_hooks(hm.model):
            self.stats.bypassed += 1
            return None
        h = hashlib.sha256()
        code = code_version(hm)
        head = {"format": FORMAT, "code": code, "model": model_identity(hm.model), "layers": list(layers),
                "positions": _plain(positions), "spans": _plain(spans), "dtype": str(dtype),
                "bos": getattr(hm.tokenizer, "bos_token_id", None), "n": len(ids)}
        h.update(json.dumps(head, sort_keys=True, default=str).encode())
        lengths = torch.tensor([len(x) for x in ids], dtype=torch.int64)
        flat = torch.tensor([t for x in ids for t in x], dtype=torch.int64)
        h.update(_tensor_bytes(lengths))
        h.update(_tensor_bytes(flat))
        if extra is not None:
            for i, item in enumerate(extra):
                for name in sorted(item):
                    v = item[name]
                    if isinstance(v, Tensor):
                        _update_tensor(h, f"{i}.{name}", v)
                    else:
                        h.update(f"{i}.{name}|{json.dumps(_plain(v), sort_keys=True, default=repr)}".encode())
        key = h.hexdigest()
        self._code[key] = code  # written into the entry's metadata by put
        return key

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}{_SUFFIX}"

    # ------------------------------------------------------------- read/write
    def get(self, key: str) -> Tensor | list[Tensor] | None:
        """The stored states, or None (missing, or corrupt: then the entry is deleted)."""
        from safetensors import safe_open

        p = self.path(key)
        if not p.is_file():
            self.stats.misses += 1
            return None
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in f.keys()}
            if meta.get("format") != FORMAT or meta.get("key") != key:
                raise ValueError(f"format/key mismatch ({meta.get('format')}, {meta.get('key')})")
            if tensors_digest(tensors) != meta.get("checksum"):
                raise ValueError("checksum mismatch")
            out = _unpack(tensors, meta)
        except Exception as e:  # noqa: BLE001 - any unreadable entry is recomputed
            log.warning("activation cache entry %s is corrupt (%s); recomputing it", p, e)
            self.stats.corrupt += 1
            self.stats.misses += 1
            p.unlink(missing_ok=True)
            return None
        self.stats.hits += 1
        self._code.pop(key, None)
        return out

    def put(self, key: str, states: Tensor | list[Tensor], **meta: str) -> Path:
        """Write an entry atomically (temp file in the same directory, fsync, rename)."""
        from safetensors.torch import save_file

        tensors, kind = _pack(states)
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        info = {"format": FORMAT, "key": key, "kind": kind, "checksum": tensors_digest(tensors),
                **({"code": self._code.pop(key)} if key in self._code else {}),
                **{k: str(v) for k, v in meta.items()}}
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            save_file(tensors, str(tmp), metadata=info)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)
        self.stats.writes += 1
        return p

    # ----------------------------------------------------------------- admin
    def entries(self) -> list[Path]:
        return sorted(self.root.glob(f"*/*{_SUFFIX}")) if self.root.is_dir() else []

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.entries())

    def clear(self) -> int:
        """Delete every entry (and stale temp files); returns how many entries were deleted."""
        n = 0
        for p in self.entries():
            p.unlink(missing_ok=True)
            n += 1
        for p in self.root.glob("*/.*.tmp") if self.root.is_dir() else []:
            p.unlink(missing_ok=True)
        return n


def _pack(states: Tensor | list[Tensor]) -> tuple[dict[str, Tensor], str]:
    """Tensors to store: one stacked tensor, or a per-item list concatenated along its seq axis."""
    if isinstance(states, Tensor):
        return {"states": states.contiguous()}, "stack"
    if not states:
        return {"lengths": torch.zeros(0, dtype=torch.int64)}, "list"
    lengths = torch.tensor([s.shape[1] for s in states], dtype=torch.int64)
    return {"states": torch.cat(list(states), dim=1).contiguous(), "lengths": lengths}, "list"


def _unpack(tensors: dict[str, Tensor], meta: Mapping[str, str]) -> Tensor | list[Tensor]:
    if meta.get("kind") == "stack":
        return tensors["states"]
    if meta.get("kind") == "list":
        if "states" not in tensors:
            return []
        return list(torch.split(tensors["states"], tensors["lengths"].tolist(), dim=1))
    raise ValueError(f"unknown entry kind {meta.get('kind')!r}")


def from_config(cfg: Any) -> ActivationCache | None:
    """The cache a run config asks for (``cache.enabled``, ``cache.dir``), or None."""
    c = cfg.get("cache") if hasattr(cfg, "get") else None
    if c is None or not bool(c.get("enabled", False)):
        return None
    d = c.get("dir")
    return ActivationCache(Path(str(d)) if d not in (None, "") else default_dir())
