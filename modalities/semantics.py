"""Formal semantics: English sentences ↔ COGS-style logical forms from a small grammar.

The generator (seeded) writes sentences with at least two proper names from six
constructions: active and passive transitives, ditransitives, intransitives under a
clausal complement (``Emma said that Liam slept``), and relative clauses on the subject
or the object (``The dog that Emma saw helped Liam``). Each comes with its logical form in
the style of COGS (Kim & Linzen 2020): definite nouns as ``* noun ( x _ i ) ;`` prefixes,
events and entities as ``x _ i`` indexed by the word position of their head, and thematic
roles as ``verb . role ( x _ i , arg )`` joined by ``AND``. ``lf_style="compact"`` writes
the same form without the spaces (``*dog(x1); see.agent(x3, Emma) AND ...``).

Baselines of the harder kind: besides unpaired sentences and forms (the comparator's
baseline), each sentence is also compared with its own logical form with two names swapped
(same tokens, same structure, different meaning). Names appear in the form in sentence order
(as in COGS), so a swap also breaks word order; the ``shuffled`` variant reorders the
conjuncts so the names appear in the opposite order (same meaning), and ``swapped_shuffled``
is its name-swapped twin (names back in sentence order, meaning wrong): comparing those two
separates meaning from surface order.
"""
from __future__ import annotations

import random
from itertools import permutations
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from hub.contract import PairedSet, Side
from hub.errors import UserError
from modalities.base import Adapter, register_adapter

NAMES = ("Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Mia", "Leo", "Sofia", "Oscar", "Chloe", "Henry", "Zoe",
         "Jack", "Lily", "Max", "Nora", "Hugo", "Ella", "Finn")
NOUNS = ("cat", "dog", "girl", "boy", "teacher", "baker", "rabbit", "child", "doctor", "farmer", "pirate", "king")
OBJECTS = ("cake", "book", "ball", "cookie", "box", "flower", "letter", "hat", "key", "apple")
# (lemma, past tense, past participle)
TRANSITIVE = (("see", "saw", "seen"), ("like", "liked", "liked"), ("help", "helped", "helped"),
              ("admire", "admired", "admired"), ("call", "called", "called"), ("find", "found", "found"),
              ("visit", "visited", "visited"), ("notice", "noticed", "noticed"), ("hug", "hugged", "hugged"),
              ("follow", "followed", "followed"))
INTRANSITIVE = (("sleep", "slept"), ("smile", "smiled"), ("run", "ran"), ("laugh", "laughed"), ("dance", "danced"),
                ("cry", "cried"))
DITRANSITIVE = (("give", "gave"), ("send", "sent"), ("show", "showed"), ("hand", "handed"), ("lend", "lent"))
CLAUSAL = (("say", "said"), ("think", "thought"), ("hope", "hoped"), ("believe", "believed"), ("know", "knew"))
CONSTRUCTIONS = ("active", "passive", "ditransitive", "ccomp", "subject_relative", "object_relative")


@dataclass(frozen=True)
class Term:
    """One conjunct ``pred ( args )``; ``definite`` terms are ``*``-prefixed presuppositions."""

    pred: str
    args: tuple[str, ...]
    definite: bool = False


@dataclass(frozen=True)
class Example:
    """A sentence, its logical form (as terms) and its two names, in sentence order."""

    sentence: str
    terms: tuple[Term, ...]
    names: tuple[str, str]
    construction: str


def var(i: int) -> str:
    return f"x{i}"


def render(terms: Sequence[Term], style: str = "cogs") -> str:
    """Write terms as a COGS logical form (definites first, then conjuncts joined by AND)."""
    if style not in ("cogs", "compact"):
        raise UserError(f"lf_style={style!r}: expected 'cogs' or 'compact'")
    cogs = style == "cogs"

    def arg(a: str) -> str:
        return f"x _ {a[1:]}" if cogs and a.startswith("x") and a[1:].isdigit() else a

    def one(t: Term) -> str:
        pred = t.pred.replace(".", " . ") if cogs else t.pred
        inner = (" , " if cogs else ", ").join(arg(a) for a in t.args)
        return f"{pred} ( {inner} )" if cogs else f"{pred}({inner})"

    pre = [("* " if cogs else "*") + one(t) + (" ;" if cogs else ";") for t in terms if t.definite]
    body = " AND ".join(one(t) for t in terms if not t.definite)
    return " ".join(pre + [body])


def swap_names(terms: Sequence[Term], a: str, b: str) -> tuple[Term, ...]:
    """The same form with names ``a`` and ``b`` exchanged everywhere."""
    m = {a: b, b: a}
    return tuple(Term(t.pred, tuple(m.get(x, x) for x in t.args), t.definite) for t in terms)


def shuffle_conjuncts(terms: Sequence[Term], rng: random.Random, names: tuple[str, str] | None = None
                      ) -> tuple[Term, ...]:
    """The same form with its conjuncts (not the definite prefixes) in another order.

    With ``names = (a, b)`` (a first in the sentence) the order is chosen so that b comes
    before a in the form where some order allows it: the shuffled true form then has the
    names in the opposite order to the sentence, and its name-swapped twin has them in the
    sentence's order, which pits meaning against surface order.
    """
    defs = [t for t in terms if t.definite]
    conj = [t for t in terms if not t.definite]
    if len(conj) < 2:
        return tuple(defs + conj)
    original = list(conj)

    def reversed_names(order: list[Term]) -> bool:
        flat = [x for t in order for x in t.args]
        return names is None or (names[0] in flat and names[1] in flat and flat.index(names[1]) < flat.index(names[0]))

    candidates = [list(p) for p in permutations(conj) if list(p) != original]
    good = [c for c in candidates if reversed_names(c)]
    return tuple(defs + rng.choice(good or candidates))


class Grammar:
    """Samples examples of each construction; word positions index the variables (COGS)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def _names(self, k: int) -> list[str]:
        return self.rng.sample(NAMES, k)

    def active(self) -> Example:
        a, b = self._names(2)
        lemma, past, _ = self.rng.choice(TRANSITIVE)
        # Emma(0) saw(1) Liam(2)
        return Example(f"{a} {past} {b} .", (Term(f"{lemma}.agent", (var(1), a)), Term(f"{lemma}.theme", (var(1), b))),
                       (a, b), "active")

    def passive(self) -> Example:
        a, b = self._names(2)
        lemma, _, part = self.rng.choice(TRANSITIVE)
        # Liam(0) was(1) seen(2) by(3) Emma(4)
        return Example(f"{b} was {part} by {a} .",
                       (Term(f"{lemma}.theme", (var(2), b)), Term(f"{lemma}.agent", (var(2), a))), (b, a), "passive")

    def ditransitive(self) -> Example:
        a, b = self._names(2)
        lemma, past = self.rng.choice(DITRANSITIVE)
        obj = self.rng.choice(OBJECTS)
        # Emma(0) gave(1) Liam(2) the(3) cake(4)
        return Example(f"{a} {past} {b} the {obj} .",
                       (Term(obj, (var(4),), True), Term(f"{lemma}.agent", (var(1), a)),
                        Term(f"{lemma}.recipient", (var(1), b)), Term(f"{lemma}.theme", (var(1), var(4)))),
                       (a, b), "ditransitive")

    def ccomp(self) -> Example:
        a, b = self._names(2)
        lemma, past = self.rng.choice(CLAUSAL)
        ilemma, ipast = self.rng.choice(INTRANSITIVE)
        # Emma(0) said(1) that(2) Liam(3) slept(4)
        return Example(f"{a} {past} that {b} {ipast} .",
                       (Term(f"{lemma}.agent", (var(1), a)), Term(f"{lemma}.ccomp", (var(1), var(4))),
                        Term(f"{ilemma}.agent", (var(4), b))), (a, b), "ccomp")

    def subject_relative(self) -> Example:
        a, b = self._names(2)
        noun = self.rng.choice(NOUNS)
        (l1, p1, _), (l2, p2, _) = self.rng.sample(TRANSITIVE, 2)
        # The(0) dog(1) that(2) Emma(3) saw(4) helped(5) Liam(6)
        return Example(f"The {noun} that {a} {p1} {p2} {b} .",
                       (Term(noun, (var(1),), True), Term(f"{l1}.agent", (var(4), a)),
                        Term(f"{l1}.theme", (var(4), var(1))), Term(f"{l2}.agent", (var(5), var(1))),
                        Term(f"{l2}.theme", (var(5), b))), (a, b), "subject_relative")

    def object_relative(self) -> Example:
        a, b = self._names(2)
        noun = self.rng.choice(NOUNS)
        (l1, p1, _), (l2, p2, _) = self.rng.sample(TRANSITIVE, 2)
        # Emma(0) saw(1) the(2) dog(3) that(4) helped(5) Liam(6)
        return Example(f"{a} {p1} the {noun} that {p2} {b} .",
                       (Term(noun, (var(3),), True), Term(f"{l1}.agent", (var(1), a)),
                        Term(f"{l1}.theme", (var(1), var(3))), Term(f"{l2}.agent", (var(5), var(3))),
                        Term(f"{l2}.theme", (var(5), b))), (a, b), "object_relative")

    def sample(self, construction: str) -> Example:
        if construction not in CONSTRUCTIONS:
            raise UserError(f"construction {construction!r}: expected one of {CONSTRUCTIONS}")
        return getattr(self, construction)()


def generate(n: int, constructions: Sequence[str] = CONSTRUCTIONS, seed: int = 0) -> list[Example]:
    """``n`` distinct examples, cycling through ``constructions`` (seeded)."""
    rng = random.Random(seed)
    g = Grammar(rng)
    seen, out, tries = set(), [], 0
    while len(out) < n:
        ex = g.sample(constructions[len(out) % len(constructions)])
        tries += 1
        if tries > 50 * n:
            raise UserError(f"cannot generate {n} distinct sentences from constructions {list(constructions)}")
        if ex.sentence in seen:
            continue
        seen.add(ex.sentence)
        out.append(ex)
    return out


# ------------------------------------------------------------------------ adapter
VARIANTS = ("paired", "swapped", "shuffled", "swapped_shuffled")


@register_adapter("semantics")
class SemanticsAdapter(Adapter):
    """Sentence ↔ logical form; with ``variants`` also sentence ↔ altered forms."""

    modality = "semantics"

    def __init__(self, n_items: int = 120, constructions: Sequence[str] = CONSTRUCTIONS, lf_style: str = "cogs",
                 variants: Sequence[str] = ("paired",), positions: str = "last", seed: int = 0) -> None:
        super().__init__()
        bad = [v for v in variants if v not in VARIANTS]
        if bad:
            raise UserError(f"variants: unknown {bad}; expected some of {VARIANTS}")
        if lf_style not in ("cogs", "compact"):
            raise UserError(f"lf_style={lf_style!r}: expected 'cogs' or 'compact'")
        self.n_items, self.constructions, self.lf_style = n_items, list(constructions), lf_style
        self.variants, self.positions, self.seed = list(variants), positions, seed

    def describe(self) -> str:
        return f"SemanticsAdapter ({self.n_items} sentences, {len(self.constructions)} constructions, {self.lf_style})"

    def examples(self) -> list[Example]:
        return generate(self.n_items, self.constructions, self.seed)

    def forms(self, examples: Sequence[Example], variant: str) -> list[str]:
        """The logical form of each example, altered as ``variant`` says (``swapped_shuffled``
        is the ``shuffled`` form with the names swapped: the same conjunct order)."""
        if variant not in VARIANTS:
            raise UserError(f"variant {variant!r}: expected one of {VARIANTS}")
        rng = random.Random(self.seed + 1)
        out = []
        for ex in examples:
            terms = ex.terms
            if variant in ("shuffled", "swapped_shuffled"):
                terms = shuffle_conjuncts(terms, rng, ex.names)
            if variant in ("swapped", "swapped_shuffled"):
                terms = swap_names(terms, *ex.names)
            out.append(render(terms, self.lf_style))
        return out

    def pairs(self, model=None) -> Iterator[PairedSet]:
        """One set per variant: the sentences against their (altered) logical forms."""
        exs = self.examples()
        sentences = [ex.sentence for ex in exs]
        for variant in self.variants:
            yield PairedSet(
                name=f"sentence-lf:{variant}",
                a=Side(sentences, "text", self.positions, label="sentence"),
                b=Side(self.forms(exs, variant), "semantics", self.positions, label=f"lf:{variant}"),
                ids={"task": "sentence-lf", "lang": variant, "src": "en", "tgt": "lf", "modality": "semantics"},
                items=[f"{ex.construction}:{i}" for i, ex in enumerate(exs)],
            )
