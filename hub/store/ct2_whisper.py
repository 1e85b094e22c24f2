"""Convert a CTranslate2 (faster-whisper) Whisper model into a Hugging Face model directory
(the file format and its reader: :mod:`hub.store.ct2_format`).

Name mapping (CTranslate2 -> ``WhisperForConditionalGeneration``), per layer ``i``:

=============================================  =============================================
``encoder/conv{1,2}/{weight,bias}``            ``model.encoder.conv{1,2}.*``
``encoder/position_encodings/encodings``       ``model.encoder.embed_positions.weight``
``encoder/layer_norm/{gamma,beta}``            ``model.encoder.layer_norm.{weight,bias}``
``*/layer_i/self_attention/layer_norm``        ``*.layers.i.self_attn_layer_norm``
``*/layer_i/self_attention/linear_0``          fused q|k|v -> ``self_attn.{q,k,v}_proj``
``*/layer_i/self_attention/linear_1``          ``self_attn.out_proj``
``decoder/layer_i/attention/layer_norm``       ``encoder_attn_layer_norm``
``decoder/layer_i/attention/linear_0``         ``encoder_attn.q_proj``
``decoder/layer_i/attention/linear_1``         fused k|v -> ``encoder_attn.{k,v}_proj``
``decoder/layer_i/attention/linear_2``         ``encoder_attn.out_proj``
``*/layer_i/ffn/layer_norm``                   ``final_layer_norm``
``*/layer_i/ffn/linear_{0,1}``                 ``fc1``, ``fc2``
``decoder/embeddings/weight``                  ``model.decoder.embed_tokens.weight``
``decoder/position_encodings/encodings``       ``model.decoder.embed_positions.weight``
``decoder/projection/weight`` (alias)          ``proj_out.weight`` (tied to the embeddings)
=============================================  =============================================

HF's ``k_proj`` has no bias; CTranslate2 stores a zero bias slice for it, which is checked
and dropped. int8/int16 quantized weights (``*_scale`` variables) are de-quantized.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from .ct2_format import CT2FormatError, CT2Model, read_ct2_model

log = logging.getLogger(__name__)


def _weight(m: CT2Model, scope: str) -> np.ndarray:
    """A linear/conv weight as float32, de-quantized when stored as int8/int16."""
    w = m.get(f"{scope}/weight")
    scale_name = f"{scope}/weight_scale"
    if w.dtype in (np.int8, np.int16):
        if scale_name not in m:
            raise CT2FormatError(f"quantized weight {scope}/weight has no weight_scale")
        scale = m.get(scale_name).astype(np.float32)
        wf = w.astype(np.float32)
        if scale.ndim == 0:
            return wf / scale
        return wf / scale.reshape((-1,) + (1,) * (wf.ndim - 1))
    return w.astype(np.float32)


def _f32(m: CT2Model, name: str) -> np.ndarray:
    return m.get(name).astype(np.float32)


def _num_layers(m: CT2Model, stack: str) -> int:
    pat = re.compile(rf"^{stack}/layer_(\d+)/")
    ids = {int(g.group(1)) for k in m.variables if (g := pat.match(k))}
    if not ids or ids != set(range(max(ids) + 1)):
        raise CT2FormatError(f"{stack} layers are missing or not contiguous: {sorted(ids)}")
    return max(ids) + 1


def _scalar(m: CT2Model, name: str, default: int | None = None) -> int:
    if name not in m:
        if default is None:
            raise CT2FormatError(f"scalar {name!r} missing")
        return default
    return int(m.get(name).reshape(()))


def whisper_dims(m: CT2Model) -> dict[str, int]:
    """Model dimensions read off the variable shapes."""
    if m.spec != "WhisperSpec":
        raise CT2FormatError(f"expected a WhisperSpec model, got {m.spec!r}")
    conv1 = m.get("encoder/conv1/weight")
    emb = m.get("decoder/embeddings/weight")
    enc_layers = _num_layers(m, "encoder")
    dec_layers = _num_layers(m, "decoder")
    return dict(
        num_mel_bins=int(conv1.shape[1]),
        d_model=int(conv1.shape[0]),
        vocab_size=int(emb.shape[0]),
        encoder_layers=enc_layers,
        decoder_layers=dec_layers,
        encoder_attention_heads=_scalar(m, "encoder/num_heads"),
        decoder_attention_heads=_scalar(m, "decoder/num_heads"),
        encoder_ffn_dim=int(m.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(m.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(m.get("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(m.get("decoder/position_encodings/encodings").shape[0]),
    )


def _check_zero_k_bias(bias: np.ndarray, name: str) -> None:
    if np.abs(bias).max(initial=0.0) > 1e-6:
        raise CT2FormatError(
            f"{name}: the key-projection slice of the fused bias is not zero "
            "(HF Whisper's k_proj has no bias)"
        )


def ct2_whisper_state_dict(m: CT2Model) -> dict[str, np.ndarray]:
    """Map CTranslate2 Whisper variables to ``WhisperForConditionalGeneration`` parameter names."""
    dims = whisper_dims(m)
    d = dims["d_model"]
    sd: dict[str, np.ndarray] = {}

    def linear(dst: str, scope: str, bias: bool = True) -> None:
        sd[f"{dst}.weight"] = _weight(m, scope)
        if bias:
            sd[f"{dst}.bias"] = _f32(m, f"{scope}/bias")

    def norm(dst: str, scope: str) -> None:
        sd[f"{dst}.weight"] = _f32(m, f"{scope}/gamma")
        sd[f"{dst}.bias"] = _f32(m, f"{scope}/beta")

    def fused(dst_prefix: str, names: list[str], scope: str) -> None:
        w = _weight(m, scope)
        b = _f32(m, f"{scope}/bias")
        if w.shape[0] != d * len(names) or b.shape[0] != d * len(names):
            raise CT2FormatError(f"{scope}: fused shape {w.shape} is not {len(names)} x {d}")
        for j, nm in enumerate(names):
            sl = slice(j * d, (j + 1) * d)
            sd[f"{dst_prefix}.{nm}.weight"] = w[sl]
            if nm == "k_proj":
                _check_zero_k_bias(b[sl], f"{scope}/bias")
            else:
                sd[f"{dst_prefix}.{nm}.bias"] = b[sl]

    # encoder
    for c in ("conv1", "conv2"):
        linear(f"model.encoder.{c}", f"encoder/{c}")
    sd["model.encoder.embed_positions.weight"] = _f32(m, "encoder/position_encodings/encodings")
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    for i in range(dims["encoder_layers"]):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        fused(f"{dst}.self_attn", ["q_proj", "k_proj", "v_proj"], f"{src}/self_attention/linear_0")
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")

    # decoder
    sd["model.decoder.embed_tokens.weight"] = _weight(m, "decoder/embeddings")
    sd["model.decoder.embed_positions.weight"] = _f32(m, "decoder/position_encodings/encodings")
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    for i in range(dims["decoder_layers"]):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        fused(f"{dst}.self_attn", ["q_proj", "k_proj", "v_proj"], f"{src}/self_attention/linear_0")
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
        linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
        fused(f"{dst}.encoder_attn", ["k_proj", "v_proj"], f"{src}/attention/linear_1")
        linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")

    proj = _weight(m, "decoder/projection")
    if not np.array_equal(proj, sd["model.decoder.embed_tokens.weight"]):
        raise CT2FormatError(
            "decoder/projection differs from decoder/embeddings; HF Whisper ties them"
        )
    if "decoder/projection/bias" in m and np.abs(_f32(m, "decoder/projection/bias")).max() > 0:
        raise CT2FormatError("decoder/projection has a non-zero bias; HF Whisper has none")
    sd["proj_out.weight"] = proj
    return sd


# ----------------------------------------------------------------------------- HF model


def _generation_config(tokenizer: Any, ct2_cfg: dict[str, Any], dims: dict[str, int]):
    from transformers import GenerationConfig

    vocab = tokenizer.get_vocab()

    def tid(tok: str) -> int:
        if tok not in vocab:
            raise CT2FormatError(f"token {tok!r} not in the Whisper tokenizer")
        return int(vocab[tok])

    eot = tid("<|endoftext|>")
    lang_ids = ct2_cfg.get("lang_ids") or []
    lang_to_id = {tokenizer.convert_ids_to_tokens(int(i)): int(i) for i in lang_ids}
    gen = GenerationConfig(
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=tid("<|startoftranscript|>"),
        max_length=dims["max_target_positions"],
        suppress_tokens=[int(i) for i in ct2_cfg.get("suppress_ids", [])],
        begin_suppress_tokens=[int(i) for i in ct2_cfg.get("suppress_ids_begin", [220, eot])],
        alignment_heads=[[int(a), int(b)] for a, b in ct2_cfg.get("alignment_heads", [])],
        lang_to_id=lang_to_id,
        task_to_id={"transcribe": tid("<|transcribe|>"), "translate": tid("<|translate|>")},
        no_timestamps_token_id=tid("<|notimestamps|>"),
        prev_sot_token_id=tid("<|startofprev|>"),
        is_multilingual=bool(lang_to_id),
        # default: detect the language, then transcribe (what openai/whisper-*'s
        # forced_decoder_ids [[1, None], [2, <|transcribe|>]] did, without the deprecated flag)
        task="transcribe",
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )
    return gen


def build_whisper_tokenizer(src_dir: str | Path, vocab_size: int):
    """A ``WhisperTokenizer`` from faster-whisper's ``tokenizer.json``.

    As in the ``openai/whisper-*`` tokenizers, every special added token except
    ``<|endoftext|>`` is an extra special token (so ``all_special_ids[-1]`` is
    ``<|notimestamps|>`` and timestamps start right after it), and the timestamp tokens
    ``<|0.00|>`` .. ``<|30.00|>`` (names from ``vocabulary.txt`` when shipped) are added as
    non-special tokens so that the tokenizer covers the model's whole vocabulary.
    """
    from transformers import AddedToken, WhisperTokenizer

    src_dir = Path(src_dir)
    tok_file = src_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise CT2FormatError(f"{tok_file} is missing: a Whisper tokenizer.json is required")
    tj = json.loads(tok_file.read_text(encoding="utf-8"))
    added = sorted(tj.get("added_tokens", []), key=lambda t: t["id"])
    extras = [t["content"] for t in added if t.get("special") and t["content"] != "<|endoftext|>"]
    tok = WhisperTokenizer(
        tokenizer_file=str(tok_file),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=extras,
    )
    n = len(tok)
    if n < vocab_size:
        names: list[str] = []
        vocab_txt = src_dir / "vocabulary.txt"
        if vocab_txt.is_file():
            lines = vocab_txt.read_text(encoding="utf-8").split("\n")
            names = lines[n:vocab_size]
        if len(names) != vocab_size - n or not all(re.fullmatch(r"<\|\d+\.\d\d\|>", x) for x in names):
            names = ["<|%.2f|>" % (i * 0.02) for i in range(vocab_size - n)]
        tok.add_tokens(
            [AddedToken(x, special=False, normalized=False, lstrip=False, rstrip=False) for x in names]
        )
    if len(tok) != vocab_size:
        raise CT2FormatError(f"tokenizer has {len(tok)} tokens, the model {vocab_size}")
    return tok


def convert_ct2_whisper(src_dir: str | Path, out_dir: str | Path, model_file: str = "model.bin"):
    """Convert a faster-whisper directory (``model.bin``, ``config.json``, ``tokenizer.json``)
    into a Hugging Face ``WhisperForConditionalGeneration`` + ``WhisperProcessor`` directory.

    Returns the saved model.
    """
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    m = read_ct2_model(src_dir / model_file)
    log.info("read %s: %s rev %d, %d variables", model_file, m.spec, m.revision, len(m.variables))
    dims = whisper_dims(m)
    sd = ct2_whisper_state_dict(m)

    ct2_cfg: dict[str, Any] = {}
    if (src_dir / "config.json").is_file():
        ct2_cfg = json.loads((src_dir / "config.json").read_text())

    tokenizer = build_whisper_tokenizer(src_dir, dims["vocab_size"])
    tokenizer.model_max_length = dims["max_target_positions"]
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")

    if (src_dir / "preprocessor_config.json").is_file():
        fe = WhisperFeatureExtractor.from_pretrained(src_dir)
    else:
        # Whisper (non large-v3) front end: 80 mel bins, 16 kHz, 30 s chunks, hop 160, n_fft 400.
        fe = WhisperFeatureExtractor(
            feature_size=dims["num_mel_bins"],
            sampling_rate=16000,
            hop_length=160,
            chunk_length=30,
            n_fft=400,
        )
    processor = WhisperProcessor(feature_extractor=fe, tokenizer=tokenizer)

    config = WhisperConfig(
        **dims,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        # generation settings live in generation_config.json only (transformers warns otherwise)
        suppress_tokens=None,
        begin_suppress_tokens=None,
        architectures=["WhisperForConditionalGeneration"],
    )
    model = WhisperForConditionalGeneration(config).to(torch.float32).eval()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
    expected = set(model.state_dict().keys())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise CT2FormatError(
            f"state dict mismatch: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    model.load_state_dict(state, strict=True)
    model.generation_config = _generation_config(tokenizer, ct2_cfg, dims)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return model
