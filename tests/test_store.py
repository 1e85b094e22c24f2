"""Tests of the offline model store (hub/store/) and the CTranslate2 Whisper reader.

Unit tests use a fake catalog, fake "packages" (wheel-like zips and sdist-like tars built in
tmp_path) and an injected downloader/converter: nothing is downloaded. The integration tests
load the real installed models and skip when they are not installed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hub import store as st
from hub.store import (
    CatalogEntry,
    ChecksumError,
    CorruptEntryError,
    ModelNotInstalledError,
    Package,
    Store,
    StoreError,
    UnknownModelError,
)

PART0 = b"\x00GGUF-part-zero" * 100
PART1 = b"\x01second-part" * 77
PAYLOAD = PART0 + PART1
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
LICENSE = b"Permission is granted to test.\n"


# ----------------------------------------------------------------------------- fixtures


def _entry(name="tiny", sha=PAYLOAD_SHA[:12], **kw) -> CatalogEntry:
    base = dict(
        name=name,
        format="fake",
        kind="causal_lm",
        packages=(Package("tiny-pkg-part1", "1.0"), Package("tiny-pkg-part2", "1.0")),
        file="weights.bin",
        sha256=sha,
        parts=("weights.bin.part0", "weights.bin.part1"),
        license_files=("*.dist-info/LICENSE", "*/TERMS.md"),
        description="a tiny fake model",
    )
    base.update(kw)
    return CatalogEntry(**base)


def _wheel(dest: Path, dist: str, members: dict[str, bytes]) -> Path:
    norm = dist.replace("-", "_")
    p = dest / f"{norm}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(p, "w") as z:
        for name, data in members.items():
            z.writestr(name.format(pkg=norm), data)
    return p


def _sdist(dest: Path, dist: str, members: dict[str, bytes]) -> Path:
    p = dest / f"{dist}-1.0.tar.gz"
    with tarfile.open(p, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{dist}-1.0/" + name.format(pkg=dist.replace("-", "_")))
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return p


class FakeDownloader:
    """Writes two fake packages carrying the two chunks; counts calls."""

    def __init__(self, kind="wheel"):
        self.calls = 0
        self.kind = kind

    def __call__(self, packages, dest: Path):
        self.calls += 1
        assert [p.requirement for p in packages] == ["tiny-pkg-part1==1.0", "tiny-pkg-part2==1.0"]
        make = _wheel if self.kind == "wheel" else _sdist
        return [
            # part1 goes into the *second* archive to check that order comes from the catalog
            make(dest, "tiny-pkg-part2", {
                "{pkg}/data/weights.bin.part1": PART1,
                "{pkg}-1.0.dist-info/LICENSE": LICENSE,
            }),
            make(dest, "tiny-pkg-part1", {
                "{pkg}/data/weights.bin.part0": PART0,
                "{pkg}/data/TERMS.md": b"terms\n",
                "{pkg}-1.0.dist-info/LICENSE": LICENSE,
                "{pkg}/__init__.py": b"",
            }),
        ]


def fake_convert(entry: CatalogEntry, src: Path, out: Path) -> None:
    data = (src / entry.file).read_bytes()
    assert data == PAYLOAD
    (out / "config.json").write_text(json.dumps({"model_type": "fake", "n": len(data)}))
    (out / "model.safetensors").write_bytes(data[::-1])


@pytest.fixture
def store(tmp_path):
    dl = FakeDownloader()
    s = Store(root=tmp_path / "models", catalog={"tiny": _entry()}, downloader=dl,
              converters={"fake": fake_convert})
    s.fake_downloader = dl  # type: ignore[attr-defined]
    return s


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-")) if root.exists() else []


# ----------------------------------------------------------------------------- root / catalog


def test_root_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMANTIC_HUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert st.store_root() == tmp_path / "home" / "models"
    assert Store(catalog={}).root == tmp_path / "home" / "models"  # read at use time
    monkeypatch.delenv("SEMANTIC_HUB_HOME")
    assert st.store_root() == tmp_path / "xdg" / "semantic-hub" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert st.store_root() == tmp_path / "user" / ".cache" / "semantic-hub" / "models"


def test_env_root_used_by_module_functions(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMANTIC_HUB_HOME", str(tmp_path))
    with pytest.raises(ModelNotInstalledError) as e:
        st.resolve("gemma3_270m")
    assert str(tmp_path / "models") in str(e.value)


def test_real_catalog_is_valid():
    cat = st.load_catalog()
    assert {"gemma3_270m", "smollm2_135m", "whisper_base"} <= set(cat)
    for e in cat.values():
        assert e.format in st.CONVERTERS
        assert e.kind in {"causal_lm", "whisper"}
        assert e.packages and e.license_files and len(e.sha256) >= 8
    assert cat["gemma3_270m"].sha256.startswith("a5fd3b62")
    assert len(cat["gemma3_270m"].parts) == 4


@pytest.mark.parametrize("bad", [
    {},
    {"models": {"x": {"format": "gguf"}}},
    {"models": {"x": {"format": "gguf", "kind": "causal_lm", "packages": [{"name": "p"}],
                      "file": "f", "sha256": "abcdef01"}}},
    {"models": {"x": {"format": "gguf", "kind": "causal_lm", "packages": [{"name": "p", "version": "1"}],
                      "file": "f", "sha256": "xyz"}}},
])
def test_bad_catalog_is_rejected(bad):
    with pytest.raises(StoreError):
        st.parse_catalog(bad)


# ----------------------------------------------------------------------------- fetch


def test_fetch_installs_and_is_idempotent(store):
    path = store.fetch("tiny")
    assert path == store.root / "tiny"
    assert (path / "model.safetensors").read_bytes() == PAYLOAD[::-1]
    assert (path / "LICENSE").read_bytes() == LICENSE  # duplicate LICENSE written once
    assert (path / "TERMS.md").is_file()
    man = json.loads((path / "STORE.json").read_text())
    assert man["name"] == "tiny"
    assert man["source_sha256"] == PAYLOAD_SHA
    assert man["packages"] == [{"name": "tiny-pkg-part1", "version": "1.0"},
                               {"name": "tiny-pkg-part2", "version": "1.0"}]
    assert set(man["files"]) == {"config.json", "model.safetensors", "LICENSE", "TERMS.md"}
    assert man["files"]["config.json"]["sha256"] == st.sha256_file(path / "config.json")
    assert "created" in man and "transformers" in man["versions"]
    assert _leftovers(store.root) == []

    assert store.fetch("tiny") == path
    assert store.fake_downloader.calls == 1  # installed + verified: no second download
    store.fetch("tiny", force=True)
    assert store.fake_downloader.calls == 2
    assert store.verify("tiny") == path


def test_fetch_from_sdists(tmp_path):
    s = Store(root=tmp_path, catalog={"tiny": _entry()}, downloader=FakeDownloader("sdist"),
              converters={"fake": fake_convert})
    assert (s.fetch("tiny") / "STORE.json").is_file()


def test_checksum_mismatch_is_clear_and_leaves_nothing(tmp_path):
    s = Store(root=tmp_path, catalog={"tiny": _entry(sha="deadbeef00")},
              downloader=FakeDownloader(), converters={"fake": fake_convert})
    with pytest.raises(ChecksumError) as e:
        s.fetch("tiny")
    msg = str(e.value)
    assert "weights.bin" in msg and "deadbeef00" in msg and PAYLOAD_SHA in msg
    assert not (tmp_path / "tiny").exists()
    assert _leftovers(tmp_path) == []


def test_missing_member_is_named(tmp_path):
    s = Store(root=tmp_path, catalog={"tiny": _entry(parts=("weights.bin.part0", "nope.part9"))},
              downloader=FakeDownloader(), converters={"fake": fake_convert})
    with pytest.raises(StoreError, match="nope.part9"):
        s.fetch("tiny")
    assert not (tmp_path / "tiny").exists()


def test_interrupted_conversion_leaves_no_entry_and_next_fetch_repairs(tmp_path):
    def crashing(entry, src, out):
        (out / "config.json").write_text("{}")  # half-written output
        raise RuntimeError("killed mid-conversion")

    s = Store(root=tmp_path, catalog={"tiny": _entry()}, downloader=FakeDownloader(),
              converters={"fake": crashing})
    with pytest.raises(RuntimeError, match="mid-conversion"):
        s.fetch("tiny")
    assert not (tmp_path / "tiny").exists()
    assert not s.is_installed("tiny")
    with pytest.raises(ModelNotInstalledError):
        s.resolve("tiny")

    # a hard kill leaves a temp dir behind (dead pid) and maybe a final dir without manifest
    stale = tmp_path / ".tmp-tiny-999999999-abcd1234"
    (stale / "model").mkdir(parents=True)
    (stale / "model" / "config.json").write_text("{}")
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text("{}")
    assert not s.is_installed("tiny")

    s.converters["fake"] = fake_convert
    path = s.fetch("tiny")
    assert s.verify("tiny") == path
    assert (path / "model.safetensors").read_bytes() == PAYLOAD[::-1]
    assert _leftovers(tmp_path) == []


def test_temp_dir_of_live_other_fetch_is_kept(tmp_path, store):
    live = store.root / f".tmp-other-{os.getpid()}-abcd1234"
    live.mkdir(parents=True)
    store.fetch("tiny")
    assert live.exists()


def test_downloader_failure_leaves_nothing(tmp_path):
    def failing(packages, dest):
        raise StoreError("pip download failed for tiny-pkg-part1==1.0: no network")

    s = Store(root=tmp_path, catalog={"tiny": _entry()}, downloader=failing,
              converters={"fake": fake_convert})
    with pytest.raises(StoreError, match="no network"):
        s.fetch("tiny")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".lock")) == []


# ----------------------------------------------------------------------------- verify / list


def test_verify_detects_corruption_and_fetch_repairs(store):
    path = store.fetch("tiny")
    with open(path / "model.safetensors", "r+b") as f:
        f.write(b"X")
    with pytest.raises(CorruptEntryError) as e:
        store.verify("tiny")
    assert "model.safetensors" in str(e.value) and "fetch tiny --force" in str(e.value)
    (path / "config.json").unlink()
    with pytest.raises(CorruptEntryError, match="config.json: missing"):
        store.verify("tiny")
    store.fetch("tiny")  # corrupt entries are fetched again
    assert store.fake_downloader.calls == 2
    store.verify("tiny")


def test_verify_not_installed(store):
    with pytest.raises(ModelNotInstalledError, match="semantic-hub-models fetch tiny"):
        store.verify("tiny")


def test_list_models(store):
    (info,) = store.list_models()
    assert (info.name, info.installed, info.size) == ("tiny", False, None)
    store.fetch("tiny")
    (info,) = store.list_models()
    assert info.installed and info.size > len(PAYLOAD) and info.path == store.root / "tiny"
    assert st.list is st.list_models  # `store.list()` as documented, builtin untouched
    assert list((1, 2)) == [1, 2]


# ----------------------------------------------------------------------------- resolve


def test_resolve_name_path_and_hub_id(store, tmp_path):
    with pytest.raises(ModelNotInstalledError) as e:
        store.resolve("tiny")
    assert "semantic-hub-models fetch tiny" in str(e.value)
    path = store.fetch("tiny")
    assert store.resolve("tiny") == str(path)

    local = tmp_path / "my-model"
    local.mkdir()
    assert store.resolve(str(local)) == str(local)
    assert store.resolve(local) == str(local)
    assert store.resolve("google/gemma-3-270m") == "google/gemma-3-270m"
    assert store.resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize("bad", ["gemma-nonexistent", "./no/such/dir", "a/b/c", "/abs/missing"])
def test_resolve_unknown_lists_known_names(store, bad):
    with pytest.raises(UnknownModelError) as e:
        store.resolve(bad)
    msg = str(e.value)
    assert bad in msg and "tiny" in msg and "org/model" in msg


def test_resolve_file_is_rejected(store, tmp_path):
    f = tmp_path / "weights.gguf"
    f.write_bytes(b"x")
    with pytest.raises(UnknownModelError, match="is a file"):
        store.resolve(str(f))


def test_unknown_name_in_fetch(store):
    with pytest.raises(UnknownModelError, match="known store names: tiny"):
        store.fetch("nope")


# ----------------------------------------------------------------------------- CLI


def test_cli_errors_are_one_line(tmp_path, capsys):
    from hub.store.cli import main

    root = str(tmp_path)
    assert main(["--root", root, "path", "gemma3_270m"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "semantic-hub-models fetch gemma3_270m" in err
    assert "Traceback" not in err
    assert main(["--root", root, "fetch", "no_such_model"]) == 1
    err = capsys.readouterr().err
    assert "gemma3_270m" in err and "Traceback" not in err
    assert main(["--root", root, "verify"]) == 0
    assert main(["--root", root, "list"]) == 0
    out = capsys.readouterr().out
    assert "gemma3_270m" in out and "whisper_base" in out


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


# ----------------------------------------------------------------------------- integration


def _installed_or_skip(name: str) -> str:
    try:
        return st.resolve(name)
    except ModelNotInstalledError:
        pytest.skip(f"{name} is not in the offline store ({st.store_root()}); "
                    f"run `semantic-hub-models fetch {name}`")


@pytest.mark.integration
def test_gemma3_270m_from_store():
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _installed_or_skip("gemma3_270m")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    cfg = model.config
    assert cfg.num_hidden_layers == 18 and cfg.hidden_size == 640 and cfg.vocab_size == 262144
    ids = tok("The capital of France is the city of", return_tensors="pt")
    with torch.no_grad():
        nxt = model(**ids).logits[0, -1].argmax().item()
    assert tok.decode([nxt]) == " Paris"


@pytest.mark.integration
def test_smollm2_135m_from_store():
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _installed_or_skip("smollm2_135m")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        nxt = model(**ids).logits[0, -1].argmax().item()
    assert tok.decode([nxt]) == " Paris"


@pytest.mark.integration
def test_whisper_base_from_store():
    torch = pytest.importorskip("torch")
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    path = _installed_or_skip("whisper_base")
    model = WhisperForConditionalGeneration.from_pretrained(path).eval()
    proc = WhisperProcessor.from_pretrained(path)
    assert model.config.num_mel_bins == 80 and model.config.d_model == 512
    assert len(proc.tokenizer) == model.config.vocab_size == 51865
    silence = np.zeros(16000, dtype=np.float32)
    feats = proc(silence, sampling_rate=16000, return_tensors="pt").input_features
    assert feats.shape == (1, 80, 3000)
    with torch.no_grad():
        lang = model.detect_language(feats)
    assert proc.tokenizer.convert_ids_to_tokens(lang.tolist())[0].startswith("<|")
