"""Compose the app's config in tests (the same conf/ the CLI uses)."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import hub.cli  # noqa: F401  (registers the pkg_data resolver)
from hub.cli import CONF_DIR, run_job


def compose_cfg(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def run_cfg(overrides: list[str], out: Path) -> Path:
    """Compose and run one job into ``out`` (no Hydra run dir), returning report.md."""
    return run_job(compose_cfg(overrides + ["progress=false"]), out)



def assert_only_prefixes(tok, word: str, ids) -> None:
    """Every id in a word's token set spells a non-empty prefix of the word (after the tokenizer's
    word-boundary marker): a superset such as the whole vocabulary fails."""
    from hub.lens.tokensets import scheme_of

    scheme = scheme_of(tok)
    spelled = scheme.encode(word)
    marker = scheme.encode(" ")
    assert 0 < len(ids) <= 2 * len(spelled), (word, len(ids))
    for i in ids:
        s = tok.convert_ids_to_tokens(i)
        if len(s) == 6 and s.startswith("<0x") and s.endswith(">"):  # SentencePiece byte fallback
            assert word.encode("utf-8").startswith(bytes.fromhex(s[3:5])), (word, s)
            continue
        s = s[len(marker):] if marker != " " and s.startswith(marker) else s
        assert s and spelled.startswith(s), f"{word!r}: token {i} ({tok.convert_ids_to_tokens(i)!r}) is no prefix"
