"""Model kinds: every kind's experiment capture reads the activation cache on a second run."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import run_cfg

from hub import context
from hub.models import tiny

# (experiment, tiny model of a kind other than causal_lm, size overrides)
KIND_RUNS = [
    ("image_similarity", "tiny_llava", ["modality.languages=[en,de]"]),
    ("image_lens", "tiny_gemma3_vlm", ["experiment.lens_langs=[en]", "modality.kinds=[colour,word]"]),
    ("clip_similarity", "tiny_clip", ["modality.languages=[en,de]"]),
    ("whisper_encoder", "tiny_whisper", ["modality.max_items=4"]),
    ("whisper_lens", "tiny_whisper", ["modality.max_items=4"]),  # decoder captures with encoder states
]


def _cache_stats(report: Path) -> tuple[int, int]:
    """(hits, misses) from the report's 'activation cache' line."""
    m = re.search(r"^- activation cache: (\d+) hits, (\d+) misses", report.read_text(encoding="utf-8"), re.M)
    assert m, "the report has no activation-cache line"
    return int(m[1]), int(m[2])


def _fresh_run(overrides: list[str], out: Path) -> Path:
    """One run as in a new process: a fresh model object (no in-process memo such as Whisper's)."""
    context._MODEL_CACHE.clear()
    tiny.clear()
    return run_cfg(overrides, out)


@pytest.mark.parametrize("experiment, model, extra", KIND_RUNS, ids=[r[0] for r in KIND_RUNS])
def test_second_run_reads_the_activation_cache(experiment, model, extra, tmp_path):
    cache = [f"experiment={experiment}", f"model={model}", "cache.enabled=true", f"cache.dir={tmp_path / 'acts'}",
             *extra]
    first = _cache_stats(_fresh_run(cache, tmp_path / "first"))
    second = _cache_stats(_fresh_run(cache, tmp_path / "second"))
    assert first[1] > 0, f"{experiment}: the first run captured nothing through the cache ({first})"
    assert second == (sum(first), 0), f"{experiment}: second run {second} after a first run with {first}"
    assert (tmp_path / "first" / "results.csv").read_bytes() == (tmp_path / "second" / "results.csv").read_bytes()


@pytest.mark.parametrize("kind, path, cls", [
    ("causal_lm", "tiny:llama", "HubModel"), ("vlm", "tiny:llava", "MultimodalHubModel"),
    ("audio_lm", "tiny:qwen2_audio", "AudioLMHub"), ("whisper", "tiny:whisper", "WhisperHub"),
    ("clip", "tiny:clip", "ClipModel")])
def test_every_kind_loads_through_the_kind_table(kind, path, cls):
    from hub.models import KINDS, load_model

    assert kind in KINDS
    m = load_model(path, kind=kind)
    assert type(m).__name__ == cls and m.cache is None
    if kind == "causal_lm":  # (the other tiny builders share one cached object: leave its name alone)
        assert load_model(path, kind=kind, name="my_model").name == "my_model"


def test_unknown_kind_and_tiny_name_are_one_line_errors():
    from hub.models import load_model

    with pytest.raises(ValueError, match="model.kind='foo': expected one of causal_lm, vlm"):
        load_model("tiny:llama", kind="foo")
    with pytest.raises(ValueError, match="tiny:llava: no such tiny model of this kind; known: llama"):
        load_model("tiny:llava", kind="causal_lm")  # a VLM's tiny name under the text-LM kind
