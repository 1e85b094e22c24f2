"""Integration: the model core and the main job on the real Gemma-3-270m (offline store)."""
import pandas as pd
import pytest
import torch
from helpers import assert_only_prefixes

from hub.lens import LogitLens
from hub.lens.readout import lens_readout
from hub.lens.tokensets import scheme_of, token_set
from modalities.text import TextAdapter

pytestmark = pytest.mark.integration


def test_paris_is_the_top_next_token(gemma):
    st = gemma.capture(["The capital of France is the city of"], layers=[gemma.n_layers])
    z = LogitLens(gemma).logits(st[0, 0])
    assert gemma.tokenizer.decode(int(z.argmax())) == " Paris"


def test_gemma_facts_and_parity_with_hf(gemma):
    assert (gemma.n_layers, gemma.d_model, gemma.vocab_size) == (18, 640, 262144)
    text = 'Français: "fleur" - 中文: "'
    ids = torch.tensor([gemma.tokenize([text])[0]])
    with torch.no_grad():
        out = gemma.model(input_ids=ids, output_hidden_states=True)
    st = gemma.capture([text], layers="all", positions="all")[0]  # [layer, seq, d]
    for k in range(gemma.n_layers):
        scale = out.hidden_states[k][0].abs().max()
        assert (st[k] - out.hidden_states[k][0]).abs().max() <= 1e-5 * max(1.0, float(scale))
    z = LogitLens(gemma).logits(st[-1, -1])
    torch.testing.assert_close(z, out.logits[0, -1].float(), atol=1e-3, rtol=1e-4)


def test_left_padding_on_gemma(gemma):
    texts = ["The cat", "Le chat est sur le tapis rouge.", "猫"]
    a = gemma.capture(texts, layers=[0, 6, 12, 18], batch_size=3)
    b = torch.cat([gemma.capture([t], layers=[0, 6, 12, 18]) for t in texts])
    assert ((a - b).abs().amax(-1) / b.abs().amax(-1)).max() < 1e-4


def test_sentencepiece_token_sets(gemma):
    tok = gemma.tokenizer
    assert scheme_of(tok).kind == "sentencepiece"
    flower = {tok.convert_ids_to_tokens(i) for i in token_set(tok, "flower")}
    assert {"▁flower", "flower", "▁f"} <= flower
    assert {tok.convert_ids_to_tokens(i) for i in token_set(tok, "花")} >= {"花"}
    for word in ("flower", "花", "Blume", "fleur"):  # and only the word's prefixes: a small set
        assert_only_prefixes(tok, word, token_set(tok, word))


def test_translation_readout_small(gemma):
    ad = TextAdapter(max_items=24, seed=0)
    lt = ad.lens_task("translation", "fr", "zh", gemma.tokenizer)
    df, raw = lens_readout(gemma, lt.prompts, lt.token_sets, lt.set_names)
    assert df["value"].notna().all()
    zh = df[(df.metric == "lang_prob") & (df.lang == "zh")].set_index("layer")["value"]
    # the model can do the task: at the last layer the Chinese answer carries real probability
    assert zh[18] > 0.2, zh[18]
