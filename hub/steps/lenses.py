"""Several lenses in one experiment: the ``lens=`` group read the same way everywhere.

Every lens experiment (latent_language, running_text, arithmetic, code, image_lens,
whisper_lens) builds its lenses here from the config (``lens=logit``, ``lens=patchscope``,
``lens=[logit,patchscope]``, or any lens registered with ``@register_lens`` and given a
conf/lens/<name>.yaml), runs its readout once per lens on the same captured states, tags the
rows with a ``lens`` column, draws one line per (quantity, lens) and writes one reading per
lens. Nothing is averaged over lenses: each lens is a separate reading of the same states.

A lens that cannot apply to an experiment is refused by name with the reason
(:func:`configured_lenses` ``refuse=``), as one user-error line, never replaced silently.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from hub.errors import UserError
from hub.lens.base import LENSES, Lens
from hub.lens.select import lens_options, lenses_from_cfg
from hub.models import HubModel
from hub.plots import sorted_keys


def configured_lenses(cfg, hm: HubModel, *, experiment: str, refuse: Mapping[str, str] | None = None
                      ) -> dict[str, Lens]:
    """The lenses ``cfg.lens`` selects, built for ``hm`` through the registry, in the order given.

    ``refuse``: ``{lens name: why it cannot apply to this experiment}``; selecting one is a
    one-line :class:`UserError` naming the experiment, the reason and the lenses that do apply.
    """
    for name in lens_options(cfg):
        if refuse and name in refuse:
            ok = sorted(n for n in LENSES if n not in refuse)
            raise UserError(f"lens={name} does not apply to {experiment}: {refuse[name]}; expected one of {ok}")
    return lenses_from_cfg(cfg, hm)


def per_lens(lenses: Mapping[str, Lens], read: Callable[[str, Lens], pd.DataFrame]) -> pd.DataFrame:
    """``read(name, lens)`` under every lens, each frame's rows tagged ``lens=name``, in lens order."""
    return pd.concat([read(name, lens).assign(lens=name) for name, lens in lenses.items()], ignore_index=True)


def lens_names(df: pd.DataFrame) -> list[str]:
    """The lenses of a frame's rows, in the order they first appear (the configured order)."""
    return [str(n) for n in dict.fromkeys(df["lens"])] if "lens" in df.columns else []


def lens_series(df: pd.DataFrame, col: str, order: Sequence | None = None, out: str = "series"
                ) -> tuple[pd.DataFrame, list | None]:
    """A figure series per (``col`` value, lens), so no line ever mixes two lenses.

    With one lens in ``df`` the series is the value itself (the figure of a one-lens run is
    unchanged); with several it is ``"<value> · <lens> lens"``. Returns the frame with column
    ``out`` and the series order for :func:`hub.plots.layer_curves` ``group_order`` (lens by
    lens, values in ``order`` or sorted; ``None`` for one lens without ``order``).
    """
    names = lens_names(df)
    if len(names) <= 1:
        return df.assign(**{out: df[col]}), (list(order) if order is not None else None)
    values = list(order) if order is not None else sorted_keys(df[col].unique())
    series = df[col].astype(str) + " · " + df["lens"].astype(str) + " lens"
    return df.assign(**{out: series}), [f"{v} · {n} lens" for n in names for v in values]


def lens_label(names: Sequence[str]) -> str:
    """``"logit lens"``, ``"logit and patchscope lenses"``, ``"logit, tuned and patchscope lenses"``."""
    names = list(names)
    if len(names) == 1:
        return f"{names[0]} lens"
    return ", ".join(names[:-1]) + f" and {names[-1]} lenses"


def lens_norms(lenses: Mapping[str, Lens]) -> str:
    """Whether each lens applies the final norm, e.g. ``"Final norm: on (logit lens), on (patchscope lens)"``."""
    return "Final norm: " + ", ".join(f"{'on' if ln.apply_norm else 'off'} ({n} lens)" for n, ln in lenses.items())


def per_lens_text(df: pd.DataFrame, reading: Callable[[pd.DataFrame, str], str], block: bool = False) -> str:
    """One reading per lens, ``**<name> lens.** <reading of that lens's rows>``, in lens order;
    ``block``: the label on a line of its own (a reading that opens with a table or a list)."""
    sep = "\n\n" if block else " "
    return "\n\n".join(f"**{n} lens.**{sep}" + reading(df[df["lens"] == n], n) for n in lens_names(df))
