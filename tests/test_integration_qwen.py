"""Integration: the real Qwen2.5-Coder models from the offline store.

The 0.5B runs in `make test`; the 1.5B (7.1 GB in fp32) is marked `big` and runs in
`make test-all` only. Both are checked the same way: facts of the architecture, a fact the model
must know, a 4-shot translation, capture == HF ``output_hidden_states``, and left padding ==
one prompt at a time.
"""
import pytest
import torch

from hub.lens import LogitLens

pytestmark = pytest.mark.integration

MODELS = [
    pytest.param(("qwen05", (24, 896, 151936)), id="0.5b"),
    pytest.param(("qwen15", (28, 1536, 151936)), id="1.5b", marks=pytest.mark.big),
]
PARIS = "The capital of France is the city of"
FR_ZH = "\n".join([
    'Français: "chien" - 中文: "狗"',
    'Français: "livre" - 中文: "书"',
    'Français: "eau" - 中文: "水"',
    'Français: "fleur" - 中文: "花"',
    'Français: "chat" - 中文: "',
])


def _next_token(hm, text: str) -> tuple[str, float]:
    """The top next token after ``text`` and its probability."""
    ids = torch.tensor([hm.tokenize([text])[0]])
    with torch.no_grad():
        p = hm.model(input_ids=ids).logits[0, -1].float().softmax(-1)  # [vocab]
    top = int(p.argmax())
    return hm.tokenizer.decode([top]), float(p[top])


@pytest.fixture
def qwen(request):
    name, facts = request.param
    return request.getfixturevalue(name), facts


@pytest.mark.parametrize("qwen", MODELS, indirect=True)
def test_qwen_facts_and_untied_unembedding(qwen):
    hm, facts = qwen
    assert hm.model.config.model_type == "qwen2"
    assert (hm.n_layers, hm.d_model, hm.vocab_size) == facts
    emb, unemb = hm.model.get_input_embeddings().weight, hm.model.get_output_embeddings().weight
    assert emb.data_ptr() != unemb.data_ptr() and not torch.equal(emb, unemb)


@pytest.mark.parametrize("qwen", MODELS, indirect=True)
def test_qwen_paris_is_the_top_next_token(qwen):
    hm, _ = qwen
    tok, p = _next_token(hm, PARIS)
    assert tok == " Paris" and p > 0.4, (tok, p)


@pytest.mark.parametrize("qwen", MODELS, indirect=True)
def test_qwen_translates_fr_to_zh(qwen):
    hm, _ = qwen
    tok, p = _next_token(hm, FR_ZH)
    assert tok == "猫" and p > 0.5, (tok, p)


@pytest.mark.parametrize("qwen", MODELS, indirect=True)
def test_qwen_capture_parity_with_hf(qwen):
    hm, _ = qwen
    text = 'Français: "fleur" - 中文: "'
    ids = torch.tensor([hm.tokenize([text])[0]])
    with torch.no_grad():
        out = hm.model(input_ids=ids, output_hidden_states=True)
    st = hm.capture([text], layers="all", positions="all")[0]  # [layer, seq, d]
    assert st.shape == (hm.n_layers + 1, ids.shape[1], hm.d_model)
    for k in range(hm.n_layers):
        scale = out.hidden_states[k][0].abs().max()
        assert (st[k] - out.hidden_states[k][0]).abs().max() <= 1e-5 * max(1.0, float(scale)), k
    z = LogitLens(hm).logits(st[-1, -1])  # the lens at the last layer is the model's own output
    torch.testing.assert_close(z, out.logits[0, -1].float(), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("qwen", MODELS, indirect=True)
def test_qwen_left_padding_equals_one_by_one(qwen):
    hm, _ = qwen
    texts = ["The cat", "Le chat est sur le tapis rouge.", "猫", "def add(a, b):\n    return"]
    layers = [0, hm.n_layers // 2, hm.n_layers]
    a = hm.capture(texts, layers=layers, batch_size=len(texts))
    b = torch.cat([hm.capture([t], layers=layers) for t in texts])
    assert ((a - b).abs().amax(-1) / b.abs().amax(-1)).max() < 1e-4


@pytest.mark.parametrize("name", [
    pytest.param("qwen25_coder_05b", id="0.5b"),
    pytest.param("qwen25_coder_15b", id="1.5b", marks=pytest.mark.big),
])
def test_qwen_store_entry_ships_its_license_and_verifies(name):
    import json

    from hub.store import default_store

    store = default_store()
    if not store.is_installed(name):
        pytest.skip(f"{name} not installed: run `semantic-hub-models fetch {name}`")
    path = store.verify(name)  # every file against STORE.json
    man = json.loads((path / "STORE.json").read_text())
    assert man["license"] == "Apache-2.0" and man["license_files"] == ["Apache-2.0.txt"]
    assert (path / "Apache-2.0.txt").read_text().lstrip().startswith("Apache License")
    assert man["source_sha256"] == store.entry(name).sha256
