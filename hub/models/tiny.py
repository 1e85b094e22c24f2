"""Tiny random models of every kind and a tiny tokenizer, built from configs: no download, seconds.

Used by the test suite and by ``model=tiny_*`` configs (path ``tiny:<name>``) for smoke runs of
experiments: :func:`build_tiny` is the one way a ``tiny:`` path becomes a model, whatever its kind
(the TINY table). Adding a family = a config in TINY_CONFIGS (text LMs) or in _tiny_parts
(multimodal); the parity suite (tests/test_family_parity.py) then covers it.
"""
from __future__ import annotations

import functools
import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from hub.errors import UserError
from hub.models.audio_lm import AudioLMHub
from hub.models.clip import ClipModel
from hub.models.model import HubModel
from hub.models.vlm import MultimodalHubModel
from hub.models.whisper import WhisperHub

TINY_CORPUS = (
    "The cat sat on the mat. Le chat est sur le tapis. Der Hund schläft. El perro duerme. "
    "猫在垫子上。犬が寝ている。 The capital of France is Paris. 5+3=8. def add(a, b): return a + b. "
    "Français: \"fleur\" - 中文: \"花\" English: \"flower\" Deutsch: \"Blume\" Español: \"flor\" "
    "one two three four five six seven eight nine ten plus minus times equals and or not "
)


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    """A byte-level BPE tokenizer (~400 tokens) with <bos>, <eos>, <pad>, trained on a few lines."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TINY_CORPUS] * 4, trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                                       special_tokens=[("<bos>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    fast.padding_side = "left"
    return fast


def tiny_config(family: str, vocab_size: int = 400, layers: int = 3, d: int = 32):
    """A small random config of one text family (a key of TINY_CONFIGS)."""
    import transformers as T

    common = dict(vocab_size=vocab_size, hidden_size=d, intermediate_size=2 * d, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    if family == "gpt2":
        return T.GPT2Config(vocab_size=vocab_size, n_embd=d, n_layer=layers, n_head=4, n_positions=256,
                            bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    if family not in TINY_CONFIGS:
        raise KeyError(f"no tiny config for family {family!r}; known: {', '.join(TINY_CONFIGS)}")
    cls, extra = TINY_CONFIGS[family]
    return getattr(T, cls)(**common, **extra)


# name -> (transformers config class, what that family needs beyond the common sizes)
TINY_CONFIGS: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", {"sliding_window": None}),
    "mixtral": ("MixtralConfig", {"sliding_window": None, "num_local_experts": 4, "num_experts_per_tok": 2}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 8}),
    "olmo2": ("Olmo2Config", {}),
    "phi3": ("Phi3Config", {}),
    "smollm3": ("SmolLM3Config", {}),
    "gemma": ("GemmaConfig", {"head_dim": 8}),
    "gemma2": ("Gemma2Config", {"head_dim": 8, "sliding_window": 16, "final_logit_softcapping": 30.0,
                                "attn_logit_softcapping": 50.0}),
    "gemma3": ("Gemma3TextConfig", {"head_dim": 8, "sliding_window": 16, "final_logit_softcapping": 30.0,
                                    "layer_types": None}),
    "gpt2": ("GPT2Config", {}),
}
TINY_FAMILIES = tuple(TINY_CONFIGS)


def tiny_model(family: str = "llama", seed: int = 0, **kw):
    """A HubModel over a random tiny model of ``family`` with the tiny tokenizer."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, **kw), dtype=torch.float32)
    model.eval()
    return HubModel(model, tiny_tokenizer(), name=f"tiny_{family}")


# ---------------------------------------------------- tiny multimodal models
TINY_MULTIMODAL = ("llava", "llava_next", "llava_onevision", "gemma3", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "qwen2_audio")
_TINY_TOKENS = {
    "llava": {"image_token": "<image>"},
    "llava_next": {"image_token": "<image>"},
    "llava_onevision": {"image_token": "<image>", "video_token": "<video>"},
    "gemma3": {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
    "qwen2_vl": {"image_token": "<|image_pad|>", "vision_start_token": "<|vision_start|>",
                 "vision_end_token": "<|vision_end|>", "video_token": "<|video_pad|>"},
    "qwen2_5_vl": {"image_token": "<|image_pad|>", "vision_start_token": "<|vision_start|>",
                   "vision_end_token": "<|vision_end|>", "video_token": "<|video_pad|>"},
    "idefics3": {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                 "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"},
    "smolvlm": {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"},
    "qwen2_audio": {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"},
}


def tiny_mm_tokenizer(named: dict[str, str], extra: Sequence[str] = ()):
    """The tiny tokenizer plus named special tokens (a fresh copy): multimodal and Whisper models."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(tiny_tokenizer().backend_tokenizer.to_str())
    backend.add_special_tokens([*named.values(), *extra])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                  **named)
    tok.padding_side = "left"
    return tok


def _text_cfg(cls, tok, layers: int = 3, d: int = 32, **kw):
    return cls(vocab_size=len(tok), hidden_size=d, intermediate_size=2 * d, num_hidden_layers=layers,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=1,
               eos_token_id=2, pad_token_id=0, tie_word_embeddings=False, **kw)


def _tiny_parts(family: str):
    """(config, model class, processor) of one tiny family; 32x32 images, 8x8 patches."""
    import transformers as T

    if family not in _TINY_TOKENS:
        raise KeyError(f"no tiny multimodal config for {family!r}; known: {TINY_MULTIMODAL}")
    extra = [f"<row_{i}_col_{j}>" for i in (1, 2) for j in (1, 2)] if family in ("idefics3", "smolvlm") else []
    tok = tiny_mm_tokenizer(_TINY_TOKENS[family], extra)
    vit = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
               patch_size=8)
    if family == "llava":
        ip = T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        proc = T.LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8,
                                vision_feature_select_strategy="default", num_additional_image_tokens=1)
        cfg = T.LlavaConfig(vision_config=T.CLIPVisionConfig(**vit, projection_dim=32),
                            text_config=_text_cfg(T.LlamaConfig, tok), image_token_id=tok.image_token_id,
                            vision_feature_select_strategy="default", vision_feature_layer=-1)
        return cfg, T.LlavaForConditionalGeneration, proc
    if family == "llava_next":  # "anyres": a base view plus one 32x32 crop, with row-end newline tokens
        ip = T.LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                       image_grid_pinpoints=[[32, 32]])
        proc = T.LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=8,
                                    vision_feature_select_strategy="default", num_additional_image_tokens=1)
        cfg = T.LlavaNextConfig(vision_config=T.CLIPVisionConfig(**vit, projection_dim=32),
                                text_config=_text_cfg(T.LlamaConfig, tok), image_token_id=tok.image_token_id,
                                vision_feature_select_strategy="default", vision_feature_layer=-1,
                                image_grid_pinpoints=[[32, 32]])
        return cfg, T.LlavaNextForConditionalGeneration, proc
    if family == "llava_onevision":
        ip = T.LlavaOnevisionImageProcessor(size={"height": 32, "width": 32}, image_grid_pinpoints=[[32, 32]])
        proc = T.LlavaOnevisionProcessor(image_processor=ip, tokenizer=tok, num_image_tokens=16,
                                         video_processor=T.LlavaOnevisionVideoProcessor(),
                                         vision_feature_select_strategy="full")
        cfg = T.LlavaOnevisionConfig(vision_config=T.SiglipVisionConfig(**vit), text_config=_text_cfg(T.Qwen2Config, tok),
                                     image_token_id=tok.image_token_id, video_token_id=tok.video_token_id,
                                     vision_feature_select_strategy="full", vision_feature_layer=-1,
                                     image_grid_pinpoints=[[32, 32]])
        return cfg, T.LlavaOnevisionForConditionalGeneration, proc
    if family == "gemma3":
        ip = T.Gemma3ImageProcessor(size={"height": 32, "width": 32})
        proc = T.Gemma3Processor(image_processor=ip, tokenizer=tok, image_seq_length=4)
        text = _text_cfg(T.Gemma3TextConfig, tok, head_dim=8, sliding_window=16, layer_types=None,
                         final_logit_softcapping=30.0)
        cfg = T.Gemma3Config(text_config=text, vision_config=T.SiglipVisionConfig(**vit), mm_tokens_per_image=4,
                             boi_token_index=tok.boi_token_id, eoi_token_index=tok.eoi_token_id,
                             image_token_index=tok.image_token_id)
        return cfg, T.Gemma3ForConditionalGeneration, proc
    if family in ("qwen2_vl", "qwen2_5_vl"):
        v25 = family == "qwen2_5_vl"
        sizes = dict(patch_size=8, merge_size=2, temporal_patch_size=2)
        ip = T.Qwen2VLImageProcessor(min_pixels=32 * 32, max_pixels=32 * 32, **sizes)
        proc = (T.Qwen2_5_VLProcessor if v25 else T.Qwen2VLProcessor)(
            image_processor=ip, tokenizer=tok, video_processor=T.Qwen2VLVideoProcessor(**sizes))
        text = _text_cfg(T.Qwen2_5_VLTextConfig if v25 else T.Qwen2VLTextConfig, tok,
                         rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0})
        vision = dict(depth=2, hidden_size=32, num_heads=4, patch_size=8, spatial_merge_size=2, temporal_patch_size=2,
                      in_channels=3)
        vision |= (dict(intermediate_size=64, out_hidden_size=32, fullatt_block_indexes=[1], window_size=16) if v25
                   else dict(embed_dim=32, mlp_ratio=2))
        ids = dict(image_token_id=tok.image_token_id, video_token_id=tok.video_token_id,
                   vision_start_token_id=tok.vision_start_token_id, bos_token_id=1, eos_token_id=2)
        if v25:
            return (T.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids),
                    T.Qwen2_5_VLForConditionalGeneration, proc)
        return T.Qwen2VLConfig(text_config=text, vision_config=vision, **ids), T.Qwen2VLForConditionalGeneration, proc
    if family in ("idefics3", "smolvlm"):
        smol = family == "smolvlm"  # SmolVLM: Idefics3's architecture under its own classes
        ip = (T.SmolVLMImageProcessor if smol else T.Idefics3ImageProcessor)(
            do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
        kw = dict(video_processor=T.SmolVLMVideoProcessor()) if smol else {}
        proc = (T.SmolVLMProcessor if smol else T.Idefics3Processor)(image_processor=ip, tokenizer=tok, image_seq_len=4,
                                                                     **kw)
        vision = (T.SmolVLMVisionConfig if smol else T.Idefics3VisionConfig)(**vit)
        cfg = (T.SmolVLMConfig if smol else T.Idefics3Config)(vision_config=vision, text_config=_text_cfg(T.LlamaConfig, tok),
                                                             image_token_id=tok.image_token_id, scale_factor=2)
        return cfg, (T.SmolVLMForConditionalGeneration if smol else T.Idefics3ForConditionalGeneration), proc
    fe = T.WhisperFeatureExtractor(feature_size=16)
    proc = T.Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok)
    audio = T.Qwen2AudioEncoderConfig(num_mel_bins=16, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                                      d_model=32, max_source_positions=1500)
    cfg = T.Qwen2AudioConfig(audio_config=audio, text_config=_text_cfg(T.Qwen2Config, tok),
                             audio_token_id=tok.audio_token_id)
    return cfg, T.Qwen2AudioForConditionalGeneration, proc


@functools.lru_cache(maxsize=8)
def _tiny_cached(family: str, seed: int) -> HubModel:
    cfg, cls, proc = _tiny_parts(family)
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    if family == "gemma3":  # Gemma 3 initialises its image projection to zero: random features instead
        torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.2)
    hub_cls = AudioLMHub if family == "qwen2_audio" else MultimodalHubModel
    return hub_cls(model, proc.tokenizer, name=f"tiny_{family}", processor=proc)


def tiny_multimodal(family: str = "llava", seed: int = 0) -> HubModel:
    """A random tiny multimodal model with a processor built offline (tests and smoke runs)."""
    return _tiny_cached(family, seed)


# -------------------------------------------------------- tiny random Whisper
TINY_LANGS = ("en", "de", "fr", "es", "it", "pt")
WHISPER_SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", *[f"<|{c}|>" for c in TINY_LANGS], "<|translate|>",
                    "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>")


@functools.lru_cache(maxsize=2)
def tiny_whisper(seed: int = 0, n_mels: int = 16) -> WhisperHub:
    """A random Whisper (2+2 layers, d=32) with the tiny tokenizer plus Whisper's special tokens."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    tok = tiny_mm_tokenizer({}, WHISPER_SPECIALS)
    ids = {t: tok.convert_tokens_to_ids(t) for t in WHISPER_SPECIALS}
    cfg = WhisperConfig(vocab_size=len(tok), num_mel_bins=n_mels, d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_source_positions=1500, max_target_positions=128, pad_token_id=tok.pad_token_id,
                        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
                        decoder_start_token_id=ids["<|startoftranscript|>"], begin_suppress_tokens=None,
                        suppress_tokens=None)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    return WhisperHub(model, tok, name="tiny_whisper", feature_extractor=WhisperFeatureExtractor(feature_size=n_mels))


# ---------------------------------------------------- tiny open_clip model
TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 3},
}


@functools.lru_cache(maxsize=1)
def tiny_clip_dir() -> str:
    """A temporary folder with a tiny ``open_clip_config.json`` (no weights: random init)."""
    d = Path(tempfile.mkdtemp(prefix="semantic-hub-tiny-clip-"))
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CFG, "preprocess_cfg": {}}))
    return str(d)


@functools.lru_cache(maxsize=1)
def tiny_clip(seed: int = 0) -> ClipModel:
    """A random tiny open_clip ViT/text model built through create_model_and_transforms."""
    import open_clip

    torch.manual_seed(seed)
    name = f"local-dir:{tiny_clip_dir()}"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip warns on the root logger that the folder has no weights
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name)
    finally:
        root.setLevel(level)  # leave the process's logging as it was
    return ClipModel(model, preprocess, open_clip.get_tokenizer(name), "tiny_clip")


# ------------------------------------------------------------ one way in: kind -> builder
def _by_name(build: Callable, known: Sequence[str]) -> Callable[[str], object]:
    def by_name(name: str):
        if name not in known:
            raise UserError(f"tiny:{name}: no such tiny model of this kind; known: {', '.join(known)}")
        return build(name)
    return by_name


TINY: dict[str, Callable[[str], object]] = {
    "causal_lm": _by_name(tiny_model, TINY_FAMILIES),
    "vlm": _by_name(tiny_multimodal, [f for f in TINY_MULTIMODAL if f != "qwen2_audio"]),
    "audio_lm": _by_name(tiny_multimodal, ["qwen2_audio"]),
    "whisper": _by_name(lambda _name: tiny_whisper(), ["whisper"]),
    "clip": _by_name(lambda _name: tiny_clip(), ["clip"]),
}


def build_tiny(kind: str, name: str):
    """The tiny model ``tiny:<name>`` of model kind ``kind`` (what hub.models.kinds.load_model calls)."""
    if kind not in TINY:
        raise UserError(f"no tiny models of kind {kind!r}; kinds with tiny models: {', '.join(TINY)}")
    return TINY[kind](name)


def clear() -> None:
    """Forget the built tiny models (the next build is a new object, as in a new process)."""
    for fn in (tiny_tokenizer, _tiny_cached, tiny_whisper, tiny_clip, tiny_clip_dir):
        fn.cache_clear()
