"""The interface every modality adapter shares, and the adapter registry.

An adapter turns a data set into *paired* model inputs: ``PairedSet.a[i]`` and
``PairedSet.b[i]`` are semantically equivalent (a French word and its English translation;
``5+3`` and ``five plus three``; an image and its caption). Each side says which positions
to read. Experiments never look inside an adapter: they capture both sides with the model
core and hand the states to the comparator.

Hydra selects an adapter with ``_target_`` (conf/modality/*.yaml); ``register_adapter``
additionally gives it a short name (``modalities.build("text", ...)``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from hub.errors import UserError, UserKeyError
from hub.positions import PositionSpec


@dataclass
class Side:
    """One side of a paired set: inputs, their modality and the positions to read.

    ``inputs`` are strings or token-id lists; ``spans`` (per item, unpadded token
    coordinates) narrow ``positions="mean"``; ``extra`` holds per-item model inputs
    such as ``pixel_values`` (dicts of tensors with a leading batch axis of 1).
    """

    inputs: list
    modality: str = "text"
    positions: PositionSpec = "last"
    spans: list[tuple[int, int]] | None = None
    extra: list[dict] | None = None
    label: str = ""

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class PairedSet:
    """Two aligned sides plus identifying columns for results (``lang``, ``task``, ...)."""

    name: str
    a: Side
    b: Side
    ids: dict = field(default_factory=dict)
    items: list[str] | None = None  # item ids (concepts), for reporting

    def __post_init__(self) -> None:
        if len(self.a) != len(self.b):
            raise ValueError(f"paired set {self.name!r}: side a has {len(self.a)} items, side b {len(self.b)}; "
                             "paired sides must align one to one")


class Adapter(ABC):
    """Base class of modality adapters. Subclasses set ``modality`` and yield PairedSets."""

    modality: str = "unknown"

    def __init__(self) -> None:
        self.drops: Counter = Counter()

    @abstractmethod
    def pairs(self, tokenizer=None) -> Iterator[PairedSet]:
        """Paired sets to compare; the tokenizer is given for adapters that need token positions."""

    def drop(self, reason: str, n: int = 1) -> None:
        """Count an item left out, by reason (reported, never silent)."""
        self.drops[reason] += n

    def describe(self) -> str:
        return f"{type(self).__name__} ({self.modality})"


ADAPTERS: dict[str, type[Adapter]] = {}


def register_adapter(name: str):
    """Class decorator: make an adapter buildable by short name."""
    def deco(cls: type[Adapter]) -> type[Adapter]:
        if name in ADAPTERS and ADAPTERS[name] is not cls:
            raise ValueError(f"adapter name {name!r} is already registered to {ADAPTERS[name].__name__}")
        ADAPTERS[name] = cls
        return cls
    return deco


def build(name: str, **kwargs) -> Adapter:
    """Instantiate a registered adapter by name."""
    if name not in ADAPTERS:
        raise UserKeyError(f"unknown adapter {name!r}; registered: {sorted(ADAPTERS)} "
                       "(or select any class with _target_ in conf/modality/)")
    return ADAPTERS[name](**kwargs)


def check_min_pairs(n: int, where: str, minimum: int = 4) -> None:
    """The comparator needs at least ``minimum`` pairs (debiased CKA needs 4)."""
    if n < minimum:
        raise UserError(f"{where}: only {n} pairs; at least {minimum} are needed")


def as_list(x: str | Sequence[str] | None) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)
