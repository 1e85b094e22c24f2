"""Lenses chosen in the config: the ``lens`` group (conf/lens/) -> built :class:`Lens` objects.

``lens=logit`` (default), ``lens=patchscope``, ``lens=tuned`` (with ``lens.tuned.path``) or
``lens=[logit,tuned,patchscope]`` compose one node
per chosen lens, ``cfg.lens.<name>`` holding that lens's options (conf/lens/<name>.yaml), in
the order given. The logit lens's ``apply_norm`` follows the run-level ``lens_norm``
(conf/lens/logit.yaml); the patchscope always reads the model's own (normed) output.
"""
from __future__ import annotations

from collections.abc import Mapping

from hub.errors import UserError
from hub.lens.base import LENSES, Lens, make_lens
from hub.models import HubModel


def lens_options(cfg) -> dict[str, dict]:
    """``{lens name: options}`` in the configured order; ``{"logit": {}}`` when none is set."""
    node = cfg.get("lens") if hasattr(cfg, "get") else None
    if node is None:
        return {"logit": {}}
    if not isinstance(node, Mapping) and not hasattr(node, "items"):
        raise UserError(f"lens={node!r}: expected a lens config group selection, e.g. lens=logit or "
                        f"lens=[logit,patchscope] (available: {sorted(LENSES)})")
    out = {}
    for name, opts in node.items():
        if name not in LENSES:
            raise UserError(f"lens={name!r}: unknown lens; available: {sorted(LENSES)}")
        out[str(name)] = dict(opts or {})
    if not out:
        raise UserError(f"lens: no lens selected; expected e.g. lens=logit (available: {sorted(LENSES)})")
    return out


def lenses_from_cfg(cfg, hm: HubModel) -> dict[str, Lens]:
    """Build every configured lens for ``hm`` with its options from ``cfg.lens.<name>``."""
    out = {}
    for name, opts in lens_options(cfg).items():
        if name == "logit" and "apply_norm" not in opts:  # a config without conf/lens (older runs, tests)
            opts["apply_norm"] = bool(cfg.get("lens_norm", True))
        try:
            out[name] = make_lens(name, hm, **opts)
        except TypeError as e:
            raise UserError(f"lens.{name}: bad option ({e}); see conf/lens/{name}.yaml") from None
    return out
