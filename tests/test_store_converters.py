"""Tests of the store's converters on tiny files written here: the CTranslate2 Whisper reader and
mapping, and the GGUF converter on a tiny llama written with the `gguf` package (llama.cpp's
layout: permuted q/k rows, GGUF tensor names, optional Q8_0)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from hub.store import CatalogEntry, Package


# ----------------------------------------------------------------------------- CTranslate2 Whisper


def _write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str], spec="WhisperSpec"):
    """A CTranslate2 model.bin writer following ctranslate2.specs.model_spec._serialize."""
    ids = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2,
           np.dtype("int32"): 3, np.dtype("float16"): 4}

    def s(x: str) -> bytes:
        b = x.encode()
        return struct.pack("<H", len(b) + 1) + b + b"\0"

    out = [struct.pack("<I", 6), s(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, v in sorted(variables.items()):
        v = np.asarray(v)
        out += [s(name), struct.pack("<B", v.ndim), *[struct.pack("<I", d) for d in v.shape],
                struct.pack("<B", ids[v.dtype]), struct.pack("<I", v.nbytes), v.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for a, t in aliases.items():
        out += [s(a), s(t)]
    path.write_bytes(b"".join(out))


def _hf_to_ct2(sd: dict[str, np.ndarray], enc_layers: int, dec_layers: int, heads: int):
    """The inverse mapping, written independently after CTranslate2's WhisperLoader."""
    v: dict[str, np.ndarray] = {}
    f16 = lambda x: np.asarray(x, dtype=np.float16)  # noqa: E731  (faster-whisper ships fp16)

    def lin(dst, src, bias=True):
        v[f"{dst}/weight"] = f16(sd[f"{src}.weight"])
        if bias:
            v[f"{dst}/bias"] = f16(sd[f"{src}.bias"])

    def ln(dst, src):
        v[f"{dst}/gamma"] = f16(sd[f"{src}.weight"])
        v[f"{dst}/beta"] = f16(sd[f"{src}.bias"])

    def fuse(dst, src, names):
        v[f"{dst}/weight"] = f16(np.concatenate([sd[f"{src}.{n}.weight"] for n in names]))
        v[f"{dst}/bias"] = f16(np.concatenate([
            sd[f"{src}.{n}.bias"] if n != "k_proj" else np.zeros_like(sd[f"{src}.q_proj.weight"][:, 0])
            for n in names
        ]))

    for c in ("conv1", "conv2"):
        lin(f"encoder/{c}", f"model.encoder.{c}")
    v["encoder/position_encodings/encodings"] = f16(sd["model.encoder.embed_positions.weight"])
    ln("encoder/layer_norm", "model.encoder.layer_norm")
    v["encoder/num_heads"] = np.array(heads, dtype=np.int16)
    for i in range(enc_layers):
        a, b = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        ln(f"{a}/self_attention/layer_norm", f"{b}.self_attn_layer_norm")
        fuse(f"{a}/self_attention/linear_0", f"{b}.self_attn", ["q_proj", "k_proj", "v_proj"])
        lin(f"{a}/self_attention/linear_1", f"{b}.self_attn.out_proj")
        ln(f"{a}/ffn/layer_norm", f"{b}.final_layer_norm")
        lin(f"{a}/ffn/linear_0", f"{b}.fc1")
        lin(f"{a}/ffn/linear_1", f"{b}.fc2")
    v["decoder/embeddings/weight"] = f16(sd["model.decoder.embed_tokens.weight"])
    v["decoder/position_encodings/encodings"] = f16(sd["model.decoder.embed_positions.weight"])
    ln("decoder/layer_norm", "model.decoder.layer_norm")
    v["decoder/num_heads"] = np.array(heads, dtype=np.int16)
    v["decoder/activation"] = np.array(3, dtype=np.int8)
    for i in range(dec_layers):
        a, b = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        ln(f"{a}/self_attention/layer_norm", f"{b}.self_attn_layer_norm")
        fuse(f"{a}/self_attention/linear_0", f"{b}.self_attn", ["q_proj", "k_proj", "v_proj"])
        lin(f"{a}/self_attention/linear_1", f"{b}.self_attn.out_proj")
        ln(f"{a}/attention/layer_norm", f"{b}.encoder_attn_layer_norm")
        lin(f"{a}/attention/linear_0", f"{b}.encoder_attn.q_proj")
        fuse(f"{a}/attention/linear_1", f"{b}.encoder_attn", ["k_proj", "v_proj"])
        lin(f"{a}/attention/linear_2", f"{b}.encoder_attn.out_proj")
        ln(f"{a}/ffn/layer_norm", f"{b}.final_layer_norm")
        lin(f"{a}/ffn/linear_0", f"{b}.fc1")
        lin(f"{a}/ffn/linear_1", f"{b}.fc2")
    return v, {"decoder/projection/weight": "decoder/embeddings/weight"}


def test_ct2_whisper_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from hub.store import ct2_format, ct2_whisper

    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(
        vocab_size=64, num_mel_bins=4, d_model=16, encoder_layers=2, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_source_positions=8, max_target_positions=10,
        pad_token_id=0, bos_token_id=1, eos_token_id=1, decoder_start_token_id=2,
    )
    ref = transformers.WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # make every parameter fp16-exact and distinctive
        for p in ref.parameters():
            p.copy_(torch.randn_like(p).half().float())
    sd = {k: t.detach().numpy() for k, t in ref.state_dict().items()}
    variables, aliases = _hf_to_ct2(sd, 2, 1, 2)
    _write_ct2(tmp_path / "model.bin", variables, aliases)

    m = ct2_format.read_ct2_model(tmp_path / "model.bin")
    assert (m.spec, m.revision, m.binary_version) == ("WhisperSpec", 3, 6)
    assert m.get("decoder/projection/weight") is m.get("decoder/embeddings/weight")
    dims = ct2_whisper.whisper_dims(m)
    assert dims == dict(num_mel_bins=4, d_model=16, vocab_size=64, encoder_layers=2,
                        decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=8,
                        max_target_positions=10)
    out = ct2_whisper.ct2_whisper_state_dict(m)
    assert set(out) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(out[k], sd[k], err_msg=k)

    model = transformers.WhisperForConditionalGeneration(cfg).eval()
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()})
    feats = torch.randn(1, 4, 16)
    dec = torch.tensor([[2, 5, 7]])
    with torch.no_grad():
        torch.testing.assert_close(model(feats, decoder_input_ids=dec).logits,
                                   ref(feats, decoder_input_ids=dec).logits)


def test_ct2_nonzero_k_bias_is_rejected(tmp_path):
    from hub.store import ct2_format, ct2_whisper

    v = {"decoder/embeddings/weight": np.zeros((4, 2), np.float16)}
    m = ct2_format.CT2Model(6, "WhisperSpec", 3, v)
    with pytest.raises(ct2_format.CT2FormatError):
        ct2_whisper.whisper_dims(m)  # no encoder at all
    with pytest.raises(ct2_format.CT2FormatError, match="key-projection"):
        ct2_whisper._check_zero_k_bias(np.ones(2, np.float32), "x/bias")


def test_ct2_reader_dtypes_and_errors(tmp_path):
    from hub.store import ct2_format, ct2_whisper

    w = np.array([[10, -20], [30, 127]], dtype=np.int8)
    scale = np.array([2.0, 4.0], dtype=np.float32)
    _write_ct2(tmp_path / "m.bin", {"l/weight": w, "l/weight_scale": scale,
                                     "h": np.array([1.5, -2.0], np.float16)}, {}, spec="X")
    m = ct2_format.read_ct2_model(tmp_path / "m.bin")
    assert m.spec == "X" and m.get("h").dtype == np.float16
    np.testing.assert_allclose(ct2_whisper._weight(m, "l"), w / scale[:, None])

    (tmp_path / "trunc.bin").write_bytes((tmp_path / "m.bin").read_bytes()[:-7])
    with pytest.raises(ct2_format.CT2FormatError, match="trunc"):
        ct2_format.read_ct2_model(tmp_path / "trunc.bin")
    (tmp_path / "v99.bin").write_bytes(struct.pack("<I", 99))
    with pytest.raises(ct2_format.CT2FormatError, match="version 99"):
        ct2_format.read_ct2_model(tmp_path / "v99.bin")
    bf = np.array([1.0, -3.5], np.float32).view(np.uint32) >> 16
    np.testing.assert_array_equal(ct2_format._bf16_to_f32(bf.astype(np.uint16)), [1.0, -3.5])




# ----------------------------------------------------------------------------- GGUF (llama.cpp)

# A tiny sentencepiece-style vocabulary: 3 specials, single characters, then a few merged words.
_GGUF_TOKENS = (["<unk>", "<s>", "</s>"] + list("\u2581abcdehilnorst")
                + ["\u2581t", "\u2581th", "\u2581the", "\u2581c", "\u2581ca", "\u2581cat", "at", "is"])


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The q/k row permutation llama.cpp's convert_hf_to_gguf.py applies (HF rotate-half ->
    interleaved rotary pairs); transformers' GGUF loader undoes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_tensors(model) -> dict[str, np.ndarray]:
    """HF llama state dict -> GGUF tensor names and layouts, as llama.cpp writes them."""
    cfg = model.config
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    out = {"token_embd.weight": sd["model.embed_tokens.weight"],
           "output_norm.weight": sd["model.norm.weight"]}
    if not cfg.tie_word_embeddings:  # a tied model has no output.weight in llama.cpp's files
        out["output.weight"] = sd["lm_head.weight"]
    names = {"self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}
    for i in range(cfg.num_hidden_layers):
        hf = f"model.layers.{i}."
        out[f"blk.{i}.attn_q.weight"] = _llama_cpp_permute(sd[hf + "self_attn.q_proj.weight"], cfg.num_attention_heads)
        out[f"blk.{i}.attn_k.weight"] = _llama_cpp_permute(sd[hf + "self_attn.k_proj.weight"], cfg.num_key_value_heads)
        for h, g in names.items():
            out[f"blk.{i}.{g}.weight"] = sd[hf + h + ".weight"]
    return out


def _write_tiny_gguf(path: Path, model, quant: str | None = None) -> dict[str, np.ndarray]:
    """Write ``model`` (a tiny HF llama) as a llama.cpp GGUF; 2-D tensors quantized to ``quant``
    when given. Returns the tensors as the file holds them, de-quantized (the reference)."""
    gguf = pytest.importorskip("gguf")
    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_tokenizer_model("llama")
    w.add_token_list(_GGUF_TOKENS)
    w.add_token_scores([0.0, 0.0, 0.0] + [-float(i) for i in range(len(_GGUF_TOKENS) - 3)])
    w.add_token_types([2, 3, 3] + [1] * (len(_GGUF_TOKENS) - 3))  # unknown, control x2, normal
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    held = {}
    for name, t in _gguf_tensors(model).items():
        t = np.ascontiguousarray(t, dtype=np.float32)
        if quant and t.ndim == 2:
            qt = getattr(gguf.GGMLQuantizationType, quant)
            q = gguf.quants.quantize(t, qt)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qt)
            held[name] = gguf.quants.dequantize(q, qt).reshape(t.shape)
        else:
            w.add_tensor(name, t)
            held[name] = t
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return held


def _tiny_llama(seed: int = 0, tied: bool = False):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=len(_GGUF_TOKENS), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-5, tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms away from 1 so that a swapped or skipped norm shows
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("quant, tied", [(None, False), ("Q8_0", False), (None, True)])
def test_gguf_converter_reproduces_the_weights_it_was_given(tmp_path, quant, tied):
    """The store's GGUF converter turns a llama.cpp file back into the HF model it came from:
    every tensor equal to the file's (de-quantized) tensor, in HF layout, and the same logits."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hub.store.converters import convert_gguf_causal_lm

    ref = _tiny_llama(tied=tied)
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir(), out.mkdir()
    held = _write_tiny_gguf(src / "tiny.gguf", ref, quant)
    entry = CatalogEntry(name="tiny", format="gguf", kind="causal_lm",
                         packages=(Package("p", "1"),), file="tiny.gguf", sha256="0" * 8)
    convert_gguf_causal_lm(entry, src, out)

    got = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    assert got.config.model_type == "llama" and got.config.tie_word_embeddings is tied
    emb, unemb = got.get_input_embeddings().weight, got.get_output_embeddings().weight
    assert (emb.data_ptr() == unemb.data_ptr()) is tied
    want = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    if quant:  # the reference is what the file holds: de-quantized, q/k permuted back
        cfg = ref.config
        back = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in held.items()}
        for i in range(cfg.num_hidden_layers):
            for p, heads in (("q", cfg.num_attention_heads), ("k", cfg.num_key_value_heads)):
                t = back[f"blk.{i}.attn_{p}.weight"].numpy()
                # the inverse of _llama_cpp_permute
                t = t.reshape(heads, t.shape[0] // heads // 2, 2, -1).swapaxes(1, 2).reshape(t.shape)
                want[f"model.layers.{i}.self_attn.{p}_proj.weight"] = torch.from_numpy(np.ascontiguousarray(t))
        want["model.embed_tokens.weight"] = back["token_embd.weight"]
        want["lm_head.weight"] = back["output.weight"]
        for i in range(cfg.num_hidden_layers):
            for h, g in (("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
                         ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")):
                want[f"model.layers.{i}.{h}.weight"] = back[f"blk.{i}.{g}.weight"]
        assert max((want[k] - v).abs().max().item() for k, v in ref.state_dict().items()) > 1e-4
    sd = got.state_dict()
    assert set(sd) == set(want)
    for k, v in want.items():
        torch.testing.assert_close(sd[k], v, atol=0, rtol=0, msg=k)

    ids = torch.tensor([[1, 3, 5, 9, 17, 20, 4, 8]])
    with torch.no_grad():
        ref_model = ref
        if quant:
            ref_model = _tiny_llama(tied=tied)
            ref_model.load_state_dict(want)
        torch.testing.assert_close(got(ids).logits, ref_model(ids).logits, atol=1e-5, rtol=1e-5)

    tok = AutoTokenizer.from_pretrained(str(out))  # the vocabulary came along
    assert len(tok) == len(_GGUF_TOKENS) and tok.convert_ids_to_tokens(19) == "\u2581the"
    assert tok.bos_token == "<s>" and tok.eos_token == "</s>"
