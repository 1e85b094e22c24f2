"""Code through the hub (semantic-hub paper, Secs. 3 and 4, code).

Method. (1) Similarity: each Python function is paired with its one-line description in
English, French and Chinese; for every layer both are read at the last token and scored
with the shared comparator against unpaired pairs, with bootstrap intervals over functions.
Functions that do not parse are counted and listed, not dropped silently.
Lenses: the ``lens=`` group (logit by default, patchscope, several in one job), one reading each.
(2) Lens at list commas: for every comma between two items of a Python list literal
(in a function or its example call) we read the lens at the comma and sum the probability
of `` and``, `` or`` and `` not``. A hub that reads the comma as a conjunction predicts
`` and`` above the others in middle layers.
(3) Lens at call arguments: in ``code + example call`` (``rectangle_area(3, 5)``) we
read the lens at the last token of each simple positional argument and compare the
probability of the matching parameter name (``width``) with that of the argument's own
tokens (``3``). A hub that represents the argument's role predicts the parameter name in
middle layers; the surface tokens dominate the first layers.
"""
from __future__ import annotations

import pandas as pd
from hydra.utils import instantiate

from hub.context import RunContext
from hub.steps.lens_sets import lens_sets
from hub.steps.lenses import configured_lenses, lens_label
from hub.steps.similarity import paired_similarity


def run(ctx: RunContext) -> pd.DataFrame:
    hm = ctx.model
    adapter = instantiate(ctx.cfg.modality)
    sim = paired_similarity(ctx, adapter, heading="Code: code vs description, per layer")
    bad = adapter.unparsable
    ctx.report.section("Code: functions that do not parse",
                       f"{len(bad)} function(s) left out because ast.parse rejects them"
                       + (":\n\n" + "\n".join(f"- {b}" for b in bad) if bad else "."))
    lenses = configured_lenses(ctx.cfg, hm, experiment="code")
    label = lens_label(lenses)
    commas = lens_sets(ctx, adapter, adapter.comma_task(hm.tokenizer), task="lens list comma", tag="code_commas",
                       heading=f"Code: {label} at list commas", hub_set="and", surface_set="or", lenses=lenses)
    args = lens_sets(ctx, adapter, adapter.argument_task(hm.tokenizer), task="lens call argument",
                     tag="code_arguments", heading=f"Code: {label} at call arguments", hub_set="parameter",
                     surface_set="argument", lenses=lenses)
    return pd.concat([sim, commas, args], ignore_index=True)
