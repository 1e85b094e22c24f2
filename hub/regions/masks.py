"""Regions as sets of parameter entries: masks, region sets (saved/loaded), building them.

Kept per matrix as sorted flat indices (a 1% region of a 270M model is ~8 MB instead of a
dense boolean copy of the model). A region set is saved as safetensors with metadata naming the
model it was made for (:func:`hub.regions.importance.region_identity`); loading it against
another model is an error.
"""
from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from hub.errors import UserError, UserFileError, UserKeyError
from hub.models import HubModel
from hub.regions.importance import Importance, region_identity, weights_checksum

FORMAT = "semantic-hub.regions/1"
CONTROLS = ("core", "bottom", "random")
MONO_PREFIX = "mono:"
NONE = "none"


# ----------------------------------------------------------------------------- masks
@dataclass
class Mask:
    """One region: sorted flat indices per parameter (``int64 [n]``), plus the shapes it fits."""

    name: str
    index: dict[str, Tensor]
    shapes: dict[str, tuple[int, ...]]
    identity: dict = field(default_factory=dict)

    def count(self) -> int:
        return int(sum(i.numel() for i in self.index.values()))

    def numel(self) -> int:
        return int(sum(_prod(s) for s in self.shapes.values()))

    def fraction(self) -> float:
        """Share of the scored parameters inside the region."""
        return self.count() / max(self.numel(), 1)

    def fractions(self) -> dict[str, float]:
        return {n: self.index[n].numel() / _prod(self.shapes[n]) for n in self.shapes}

    def dense(self, name: str) -> Tensor:
        """Boolean mask of one parameter, ``[param shape]``."""
        m = torch.zeros(_prod(self.shapes[name]), dtype=torch.bool)
        m[self.index[name]] = True
        return m.view(self.shapes[name])

    def restrict(self, name: str, keep: Callable[[str, Tensor, tuple[int, ...]], Tensor | None]) -> Mask:
        """A sub-region: ``keep(param, flat_index, shape) -> bool [n]`` (None drops the param)."""
        out = {}
        for n, idx in self.index.items():
            sel = keep(n, idx, self.shapes[n])
            out[n] = idx[sel] if sel is not None else idx[:0]
        return Mask(name, out, dict(self.shapes), dict(self.identity))


def _prod(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def check_k(k: float) -> float:
    """A region size must be a fraction in (0, 1]."""
    try:
        kf = float(k)
    except (TypeError, ValueError):
        raise UserError(f"k must be a fraction in (0, 1], got {k!r}") from None
    if not 0.0 < kf <= 1.0:
        raise UserError(f"k must be a fraction in (0, 1] (e.g. 0.01 for 1% per matrix), got {k!r}")
    return kf


def n_of(numel: int, k: float) -> int:
    """Entries per matrix for fraction k: round(k * numel), at least 1."""
    return min(numel, max(1, round(k * numel)))


def topk_index(score: Tensor, k: float, largest: bool = True) -> Tensor:
    """Sorted flat indices of the top (or bottom) ``k`` fraction of one matrix."""
    flat = score.reshape(-1)
    idx = torch.topk(flat, n_of(flat.numel(), k), largest=largest, sorted=False).indices
    return idx.sort().values


@dataclass
class RegionSet:
    """Named regions of one model plus the metadata that says which model and data made them."""

    masks: dict[str, Mask]
    meta: dict

    @property
    def names(self) -> list[str]:
        return [NONE, *self.masks]

    def mono(self) -> list[str]:
        return [n for n in self.masks if n.startswith(MONO_PREFIX)]

    def __contains__(self, name: str) -> bool:
        return name == NONE or name in self.masks

    def __getitem__(self, name: str) -> Mask:
        if name == NONE:
            any_mask = next(iter(self.masks.values()))
            return Mask(NONE, {n: i[:0] for n, i in any_mask.index.items()}, dict(any_mask.shapes),
                        dict(any_mask.identity))
        if name not in self.masks:
            raise UserKeyError(f"unknown region {name!r}; this region set has: {', '.join(self.names)}")
        return self.masks[name]

    def resolve(self, names: Sequence[str]) -> list[str]:
        """Expand ``mono`` to every monolingual region and check every name."""
        out = []
        for n in names:
            n = str(n)
            if n == "mono":
                out += self.mono()
            elif n in self:
                out.append(n)
            else:
                raise UserKeyError(f"unknown region {n!r}; known: {', '.join(self.names)} (or 'mono' for all "
                               f"monolingual regions)")
        return out

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write as safetensors (``<region>/<param>`` -> int64 indices), atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"{r}/{n}": idx.contiguous() for r, m in self.masks.items() for n, idx in m.index.items()}
        shapes = {n: list(s) for n, s in next(iter(self.masks.values())).shapes.items()}
        metadata = {"format": FORMAT, "meta": json.dumps(self.meta), "shapes": json.dumps(shapes),
                    "regions": json.dumps(list(self.masks))}
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"  # normal file mode
        try:
            save_file(tensors, str(tmp), metadata=metadata)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, hm: HubModel | None = None, check_weights: bool = True) -> RegionSet:
        """Read a saved region set; with ``hm``, check that it was made for this model."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise UserFileError(f"region file {path} does not exist; expected a regions.safetensors written "
                                "by regions_ablation")
        try:
            f = safe_open(str(path), framework="pt")
        except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError (and OSError)
            raise UserError(f"region file {path} is not a safetensors file ({e}); expected a regions.safetensors "
                            "written by regions_ablation") from e
        with f:
            md = f.metadata() or {}
            if md.get("format") != FORMAT:
                raise UserError(f"{path} is not a semantic-hub region file (format {md.get('format')!r}, "
                                 f"expected {FORMAT!r})")
            meta = json.loads(md["meta"])
            shapes = {n: tuple(s) for n, s in json.loads(md["shapes"]).items()}
            masks = {}
            for r in json.loads(md["regions"]):
                masks[r] = Mask(r, {n: f.get_tensor(f"{r}/{n}") for n in shapes}, dict(shapes),
                                dict(meta["identity"]))
        rs = cls(masks, meta)
        if hm is not None:
            rs.check(hm, check_weights=check_weights)
        return rs

    def check(self, hm: HubModel, check_weights: bool = True) -> None:
        """Raise ValueError unless these regions fit ``hm`` (names, shapes, checksums)."""
        mask = next(iter(self.masks.values()))
        check_fits(hm, mask)
        ident = self.meta["identity"]
        if check_weights and "weights_sha256" in ident:
            params = params_of(hm, mask)
            if weights_checksum(params) != ident["weights_sha256"]:
                raise UserError(f"regions were made for model {ident['model']!r} with other weights (weights "
                                 f"checksum differs from {hm.name!r}); pass check_weights=False to use them on "
                                 f"a fine-tuned copy on purpose")


def build_regions(imp: Importance, k: float = 0.01, seed: int = 0, mono: bool = True) -> RegionSet:
    """Core, bottom, random and (if ``mono``) monolingual regions at fraction ``k`` per matrix."""
    k = check_k(k)
    if mono and not imp.per_language:
        raise ValueError("monolingual regions need per-language importance: accumulate with keep_languages=True "
                         "or build with mono=False")
    total = imp.total
    shapes = {n: tuple(t.shape) for n, t in total.items()}
    ident = imp.identity
    gen = torch.Generator().manual_seed(int(seed))
    core = {n: topk_index(t, k) for n, t in total.items()}
    bottom = {n: topk_index(t, k, largest=False) for n, t in total.items()}
    rand = {n: torch.randperm(t.numel(), generator=gen)[:n_of(t.numel(), k)].sort().values for n, t in total.items()}
    masks = {"core": Mask("core", core, shapes, ident), "bottom": Mask("bottom", bottom, shapes, ident),
             "random": Mask("random", rand, shapes, ident)}
    if mono:
        tops = {lang: {n: topk_index(s, k) for n, s in sc.items()} for lang, sc in imp.per_language.items()}
        own: dict[str, dict[str, Tensor]] = {lang: {} for lang in tops}
        for n, shape in shapes.items():
            hits = torch.zeros(_prod(shape), dtype=torch.int16)
            for lang in tops:
                hits[tops[lang][n]] += 1
            for lang in tops:
                idx = tops[lang][n]
                own[lang][n] = idx[hits[idx] == 1]  # in L's top-k and in nobody else's
        for lang in tops:
            masks[MONO_PREFIX + lang] = Mask(MONO_PREFIX + lang, own[lang], shapes, ident)
    meta = {"identity": ident, "languages": imp.languages, "tokens": imp.tokens, "k": k, "seed": int(seed),
            **imp.settings}
    return RegionSet(masks, meta)


# ----------------------------------------------------------------------------- editing
def params_of(hm: HubModel, mask: Mask) -> dict[str, nn.Parameter]:
    named = dict(hm.model.named_parameters())
    return {n: named[n] for n in mask.shapes}


def check_fits(hm: HubModel, mask: Mask) -> None:
    """Raise ValueError unless every parameter of ``mask`` exists in ``hm`` with the same shape."""
    named = dict(hm.model.named_parameters())
    made_for = mask.identity.get("model", "?")
    for n, shape in mask.shapes.items():
        if n not in named:
            raise UserError(f"region {mask.name!r} (made for model {made_for!r}) names parameter {n!r}, "
                             f"which {hm.name!r} does not have")
        if tuple(named[n].shape) != tuple(shape):
            raise UserError(f"region {mask.name!r} (made for model {made_for!r}) expects {n} of shape "
                             f"{tuple(shape)}, but {hm.name!r} has {tuple(named[n].shape)}")
        idx = mask.index.get(n)
        if idx is None or idx.dtype != torch.int64 or (idx.numel() and int(idx.max()) >= _prod(shape)):
            raise UserError(f"region {mask.name!r}: indices of {n} are missing, not int64 or out of range")
    sha = mask.identity.get("shapes_sha256")
    if sha is not None and region_identity(hm, params_of(hm, mask), weights=False)["shapes_sha256"] != sha:
        raise UserError(f"region {mask.name!r} was made for model {made_for!r}: the checksum of parameter "
                         f"names/shapes/dtypes differs from {hm.name!r}")
