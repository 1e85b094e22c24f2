"""The interface every modality adapter shares, and the adapter registry.

An adapter turns a data set into *paired* model inputs (``PairedSet``, ``Side``) and lens
prompts (``LensPrompts``); these types are the core's contract (hub.contract), re-exported
here. Experiments never look inside an adapter: they capture both sides with the model core
and hand the states to the comparator (hub.pairs).

Hydra selects an adapter with ``_target_`` (conf/modality/*.yaml); ``register_adapter``
additionally gives it a short name (``modalities.build("text", ...)``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence

from hub.contract import LensPrompts, PairedSet, Side
from hub.errors import UserError, UserKeyError

__all__ = ["Adapter", "LensPrompts", "PairedSet", "Side", "as_list", "build", "check_min_pairs", "register_adapter"]


class Adapter(ABC):
    """Base class of modality adapters. Subclasses set ``modality`` and yield PairedSets."""

    modality: str = "unknown"

    def __init__(self) -> None:
        self.drops: Counter = Counter()

    @abstractmethod
    def pairs(self, model=None) -> Iterator[PairedSet]:
        """Paired sets to compare, built for ``model`` (the one adapter signature, see
        hub.contract): text adapters read ``model.tokenizer`` where they need token positions,
        image and audio adapters encode with the model's processor; None where not needed."""

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
