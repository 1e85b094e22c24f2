"""The contract between modality adapters and the core: what an adapter hands over.

An adapter (modalities/) turns a data set into

- *paired sets* (:class:`PairedSet`): ``a[i]`` and ``b[i]`` mean the same thing (a French word
  and its English translation; ``5+3`` and ``five plus three``; an image and its caption),
  each :class:`Side` saying which positions to read; the core captures both sides and
  compares them per layer (hub.pairs);
- *lens prompts* (:class:`LensPrompts`): prompts whose next token a lens reads, with one
  token set per named reading (target word, its English translation, digits, ...).

Every adapter has one signature, :meth:`PairSource.pairs` ``(model)``: it receives the
model it will be read with (a HubModel, or a MultimodalHubModel whose processor encodes
images or audio) and takes from it what it needs, e.g. ``model.tokenizer``. The core
defines these types and imports no adapter.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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


@dataclass
class LensPrompts:
    """Prompts read by a lens at their last token, and per prompt one token set per name.

    ``token_sets[i][s]`` is the set of vocabulary ids whose summed probability is reading
    ``set_names[s]`` of prompt ``i`` (e.g. ``[target word, English word]``). ``ids`` are the
    identifying columns of the rows (``task``, ``src``, ``tgt``); ``groups`` an optional
    per-prompt group (e.g. the operator) for breakdowns; ``drops`` counts items left out.
    """

    prompts: list[str]
    token_sets: list[list[frozenset[int]]]
    set_names: list[str]
    items: list[str]
    drops: Counter = field(default_factory=Counter)
    groups: list[str] | None = None
    ids: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.token_sets) != len(self.prompts):
            raise ValueError(f"lens prompts: {len(self.prompts)} prompts but {len(self.token_sets)} token-set lists")
        bad = [i for i, sets in enumerate(self.token_sets) if len(sets) != len(self.set_names)]
        if bad:
            raise ValueError(f"lens prompts: prompt {bad[0]} has {len(self.token_sets[bad[0]])} token sets, "
                             f"expected one per name in {self.set_names}")

    def sets(self, name: str) -> list[frozenset[int]]:
        """The token set named ``name`` of every prompt."""
        return [sets[self.set_names.index(name)] for sets in self.token_sets]


@runtime_checkable
class PairSource(Protocol):
    """What the core asks of an adapter (modalities.base.Adapter implements it)."""

    modality: str
    drops: Counter

    def pairs(self, model: Any = None) -> Iterator[PairedSet]:
        """Paired sets to compare, built for ``model`` (None where the adapter needs none)."""

    def describe(self) -> str:
        """One line naming the adapter and its data, for reports."""
