"""Vision- and audio-language models as HubModels: hooks on the language model inside.

A multimodal model (LLaVA, Gemma 3, Qwen2-VL, Idefics3/SmolVLM, Qwen2-Audio) is loaded with its
processor. The processor expands the image (or audio) placeholder into one token per image
patch (audio frame); the model replaces those token embeddings with the encoder's features.
We keep the expanded token ids, the span of placeholder tokens and the encoder inputs
(``pixel_values`` ...) per item, and the ordinary :class:`hub.models.model.HubModel` capture runs
the top-level model with hooks on the inner language model's blocks. Per family, the batch
forward adds what the language model needs for left-padded batches:

* Gemma 3: ``token_type_ids`` (1 at image tokens; image tokens attend bidirectionally);
* Qwen2-VL: 3-D M-RoPE position ids from ``get_rope_index`` (plain 1-D ``position_ids``
  would give every image token a text position) plus ``mm_token_type_ids``; text-only batches
  keep the 1-D ids, which the model broadcasts to its three rotary sections;
* LLaVA, Idefics3, Qwen2-Audio: the usual ``position_ids``.

Layer convention as everywhere: 0 = embeddings entering the language model (image features
already merged in), k = output of language-model block k.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hub.models.families import FAMILIES, Family, get_attr
from hub.models.model import Batch, HubModel

# Token-aligned processor outputs: rebuilt from the padded batch, never stacked per item.
TOKEN_ALIGNED = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "position_ids")

# Where the image placeholder goes in a prompt, per family ({image} = the processor's token).
IMAGE_PROMPTS = {
    "llava": "USER: {image}\n",
    "gemma3_vlm": "{image}",
    "qwen2_vl": "<|vision_start|>{image}<|vision_end|>",
    "idefics3": "{image}",
}
AUDIO_PROMPTS = {"qwen2_audio": "<|audio_bos|>{audio}<|audio_eos|>"}

# transformers 5 moved Qwen2-Audio's language model to model.language_model (the shared
# registry still has the v4 path language_model.model); used when the registry path fails.
FAMILY_OVERRIDES = {
    "qwen2_audio": Family("qwen2_audio", ("qwen2_audio",), body="model.language_model", unembed="lm_head",
                          text_config_attr="text_config"),
}


class ProcessorError(ValueError):
    """A multimodal model without the processor (or processor part) it needs."""


@dataclass
class MMInput:
    """One prompt with its media: expanded token ids, the placeholder span and encoder inputs.

    ``span = (start, end)`` and ``positions`` are unpadded token coordinates; ``extra`` holds
    the encoder inputs with a leading item axis (``pixel_values [1, ...]`` etc.).
    """

    ids: list[int]
    span: tuple[int, int]
    positions: list[int]
    extra: dict[str, Tensor]


def family_of(model: torch.nn.Module) -> Family:
    """The registry family, or our override where the registry's paths do not resolve."""
    mt = model.config.model_type
    fam = FAMILIES.get(mt)
    if fam is not None:
        try:
            get_attr(model, fam.body)
            get_attr(model, fam.unembed)
            return fam
        except AttributeError:
            pass
    if mt in FAMILY_OVERRIDES:
        return FAMILY_OVERRIDES[mt]
    if fam is None:
        raise KeyError(f"model_type {mt!r} is not a registered multimodal family; known: "
                       f"{sorted(set(FAMILIES) | set(FAMILY_OVERRIDES))}")
    return fam


@dataclass
class MultimodalHubModel(HubModel):
    """A HubModel over an image-/audio-text model plus its processor."""

    processor: object = None

    def __post_init__(self) -> None:
        super().__post_init__()
        cfg = self.model.config
        self.image_token_id = getattr(cfg, "image_token_id", getattr(cfg, "image_token_index", None))
        self.video_token_id = getattr(cfg, "video_token_id", None)
        self.audio_token_id = getattr(cfg, "audio_token_id", getattr(cfg, "audio_token_index", None))

    def forward_batch(self, batch: Batch, **kwargs) -> object:
        ids = batch.input_ids
        inputs = dict(input_ids=ids, attention_mask=batch.attention_mask, use_cache=False, **batch.extra)
        name = self.family.name
        if name == "gemma3_vlm":
            inputs["token_type_ids"] = (ids == self.image_token_id).long()
        if name == "qwen2_vl":
            mm = (ids == self.image_token_id).int()
            if self.video_token_id is not None:
                mm = mm + 2 * (ids == self.video_token_id).int()
            inputs["mm_token_type_ids"] = mm
            if "image_grid_thw" in batch.extra:
                pos, _ = self.model.model.get_rope_index(ids, mm_token_type_ids=mm,
                                                         image_grid_thw=batch.extra["image_grid_thw"],
                                                         attention_mask=batch.attention_mask)
                inputs["position_ids"] = pos  # [3, batch, seq]
            else:
                inputs["position_ids"] = batch.position_ids
        else:
            inputs["position_ids"] = batch.position_ids
        return self.model(**inputs, **kwargs)

    # ------------------------------------------------------------------ inputs
    def encode_image(self, image, prompt: str | None = None) -> MMInput:
        """Token ids, image-token span and pixel inputs of one image in the family's prompt."""
        return encode_image(self.processor, image, prompt or IMAGE_PROMPTS.get(self.family.name, "{image}"),
                            token_id=self.image_token_id)

    def encode_audio(self, wave: np.ndarray, prompt: str | None = None) -> MMInput:
        """Token ids, audio-token span and features of one 16 kHz clip in the family's prompt."""
        return encode_audio(self.processor, wave, prompt or AUDIO_PROMPTS.get(self.family.name, "{audio}"),
                            token_id=self.audio_token_id)


# ------------------------------------------------------------------------ encoding
def _placeholder_span(ids: list[int], token_id: int, what: str) -> tuple[tuple[int, int], list[int]]:
    pos = [i for i, t in enumerate(ids) if t == token_id]
    if not pos:
        raise ProcessorError(f"the processor output has no {what} tokens (id {token_id}); does the prompt contain "
                             f"the {what} placeholder?")
    if pos[-1] - pos[0] + 1 != len(pos):
        warnings.warn(f"{what} tokens are not contiguous (e.g. image splitting with row/column markers); the mean "
                      f"span {pos[0]}..{pos[-1]} includes the markers between them", stacklevel=3)
    return (pos[0], pos[-1] + 1), pos


def _split_outputs(out) -> tuple[list[int], dict[str, Tensor]]:
    ids = out["input_ids"][0].tolist()
    extra = {k: v for k, v in out.items() if k not in TOKEN_ALIGNED and isinstance(v, Tensor)}
    return ids, extra


def _token_id(processor, attr: str, token_id: int | None) -> int:
    """The placeholder id the model replaces: the model config's, else the tokenizer's named token."""
    if token_id is not None:
        return int(token_id)
    tok = processor.tokenizer
    if getattr(tok, attr, None):
        return int(tok.convert_tokens_to_ids(getattr(tok, attr)))
    return int(getattr(processor, f"{attr}_id"))


def encode_image(processor, image, prompt: str = "{image}", token_id: int | None = None) -> MMInput:
    """Run the processor on one image and a prompt with ``{image}`` where the image goes.

    ``token_id``: the id the model replaces with image features (``config.image_token_id``);
    for Gemma 3 this is the soft image token, not the ``<start_of_image>`` the prompt holds.
    """
    if getattr(processor, "image_processor", None) is None:
        raise ProcessorError(f"{type(processor).__name__} has no image processor; a vision-language model needs "
                             "its processor (preprocessor_config.json / processor_config.json in the model directory)")
    if "{image}" not in prompt:
        raise ValueError(f"image prompt {prompt!r} must contain {{image}} where the image goes")
    token = processor.image_token
    image = image.convert("RGB") if hasattr(image, "convert") else image
    out = processor(text=[prompt.format(image=token)], images=[[image]], return_tensors="pt")
    ids, extra = _split_outputs(out)
    span, pos = _placeholder_span(ids, _token_id(processor, "image_token", token_id), "image")
    return MMInput(ids, span, pos, extra)


def encode_audio(processor, wave: np.ndarray, prompt: str | None = "<|audio_bos|>{audio}<|audio_eos|>",
                 token_id: int | None = None, sr: int = 16_000) -> MMInput:
    """Run the processor on one 16 kHz clip and a prompt with ``{audio}`` where it goes."""
    if getattr(processor, "feature_extractor", None) is None:
        raise ProcessorError(f"{type(processor).__name__} has no feature extractor; an audio-language model needs its "
                             "processor (preprocessor_config.json in the model directory)")
    prompt = prompt or "<|audio_bos|>{audio}<|audio_eos|>"
    if "{audio}" not in prompt:
        raise ValueError(f"audio prompt {prompt!r} must contain {{audio}} where the clip goes")
    token = processor.audio_token
    out = processor(text=[prompt.format(audio=token)], audio=[np.asarray(wave, dtype=np.float32)],
                    sampling_rate=sr, return_tensors="pt")
    ids, extra = _split_outputs(out)
    span, pos = _placeholder_span(ids, _token_id(processor, "audio_token", token_id), "audio")
    if len(pos) < 2:
        raise ValueError("the clip maps to a single audio token; Qwen2-Audio's merge path needs at least two "
                         "(use a clip longer than ~40 ms)")
    return MMInput(ids, span, pos, extra)


# -------------------------------------------------------------------------- loading
def load_multimodal(path: str, dtype: str = "float32", device: str = "cpu", name: str | None = None
                    ) -> MultimodalHubModel:
    """Load an image-text or audio-text model and its processor (store name, directory or hub id)."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from hub.store import resolve

    if str(path).startswith("tiny:"):
        return tiny_multimodal(str(path).split(":", 1)[1])
    where = resolve(path)
    try:
        processor = AutoProcessor.from_pretrained(where)
    except (OSError, ValueError, TypeError) as e:
        raise ProcessorError(f"{where}: cannot load the model's processor ({e}); a multimodal model needs its "
                             "processor files (preprocessor_config.json, tokenizer)") from e
    if not (hasattr(processor, "image_processor") or hasattr(processor, "feature_extractor")):
        raise ProcessorError(f"{where}: AutoProcessor gave {type(processor).__name__}, which has no image processor "
                             "or feature extractor; the model directory lacks preprocessor_config.json")
    cfg = AutoConfig.from_pretrained(where)
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if cfg.model_type == "qwen2_audio":
        from transformers import Qwen2AudioForConditionalGeneration as cls
    else:
        cls = AutoModelForImageTextToText
    model = cls.from_pretrained(where, dtype=torch_dtype).to(device)
    tok = processor.tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return MultimodalHubModel(model, tok, name=name or str(path), family=family_of(model), processor=processor)


def get_multimodal(model_cfg, device: str = "cpu") -> MultimodalHubModel:
    """The multimodal model a ``conf/model`` entry names, loaded once per process (hub.context's cache)."""
    from hub.context import get_model

    return get_model(model_cfg, device)


# ---------------------------------------------------- tiny random configurations
TINY_FAMILIES = ("llava", "gemma3", "qwen2_vl", "idefics3", "qwen2_audio")
_TINY_TOKENS = {
    "llava": {"image_token": "<image>"},
    "gemma3": {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
    "qwen2_vl": {"image_token": "<|image_pad|>", "vision_start_token": "<|vision_start|>",
                 "vision_end_token": "<|vision_end|>", "video_token": "<|video_pad|>"},
    "idefics3": {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                 "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"},
    "qwen2_audio": {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"},
}


def tiny_mm_tokenizer(named: dict[str, str], extra: Sequence[str] = ()):
    """hub.models.tiny's tiny tokenizer plus named multimodal special tokens (a fresh copy)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from hub.models.tiny import tiny_tokenizer

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
        raise KeyError(f"no tiny multimodal config for {family!r}; known: {TINY_FAMILIES}")
    extra = [f"<row_{i}_col_{j}>" for i in (1, 2) for j in (1, 2)] if family == "idefics3" else []
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
    if family == "gemma3":
        ip = T.Gemma3ImageProcessor(size={"height": 32, "width": 32})
        proc = T.Gemma3Processor(image_processor=ip, tokenizer=tok, image_seq_length=4)
        text = _text_cfg(T.Gemma3TextConfig, tok, head_dim=8, sliding_window=16, layer_types=None,
                         final_logit_softcapping=30.0)
        cfg = T.Gemma3Config(text_config=text, vision_config=T.SiglipVisionConfig(**vit), mm_tokens_per_image=4,
                             boi_token_index=tok.boi_token_id, eoi_token_index=tok.eoi_token_id,
                             image_token_index=tok.image_token_id)
        return cfg, T.Gemma3ForConditionalGeneration, proc
    if family == "qwen2_vl":
        sizes = dict(patch_size=8, merge_size=2, temporal_patch_size=2)
        ip = T.Qwen2VLImageProcessor(min_pixels=32 * 32, max_pixels=32 * 32, **sizes)
        proc = T.Qwen2VLProcessor(image_processor=ip, tokenizer=tok, video_processor=T.Qwen2VLVideoProcessor(**sizes))
        text = _text_cfg(T.Qwen2VLTextConfig, tok, rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2],
                                                                  "rope_theta": 10000.0})
        vision = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=4, mlp_ratio=2, patch_size=8,
                      spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
        cfg = T.Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=tok.image_token_id,
                              video_token_id=tok.video_token_id, vision_start_token_id=tok.vision_start_token_id,
                              bos_token_id=1, eos_token_id=2)
        return cfg, T.Qwen2VLForConditionalGeneration, proc
    if family == "idefics3":
        ip = T.Idefics3ImageProcessor(do_image_splitting=False, size={"longest_edge": 32},
                                      max_image_size={"longest_edge": 32})
        proc = T.Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=4)
        cfg = T.Idefics3Config(vision_config=T.Idefics3VisionConfig(**vit), text_config=_text_cfg(T.LlamaConfig, tok),
                               image_token_id=tok.image_token_id, scale_factor=2)
        return cfg, T.Idefics3ForConditionalGeneration, proc
    fe = T.WhisperFeatureExtractor(feature_size=16)
    proc = T.Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok)
    audio = T.Qwen2AudioEncoderConfig(num_mel_bins=16, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                                      d_model=32, max_source_positions=1500)
    cfg = T.Qwen2AudioConfig(audio_config=audio, text_config=_text_cfg(T.Qwen2Config, tok),
                             audio_token_id=tok.audio_token_id)
    return cfg, T.Qwen2AudioForConditionalGeneration, proc


@functools.lru_cache(maxsize=8)
def _tiny_cached(family: str, seed: int) -> MultimodalHubModel:
    cfg, cls, proc = _tiny_parts(family)
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    if family == "gemma3":  # Gemma 3 initialises its image projection to zero: random features instead
        torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.2)
    return MultimodalHubModel(model, proc.tokenizer, name=f"tiny_{family}", family=family_of(model), processor=proc)


def tiny_multimodal(family: str = "llava", seed: int = 0) -> MultimodalHubModel:
    """A random tiny multimodal model with a processor built offline (tests and smoke runs)."""
    return _tiny_cached(family, seed)


def model_dir_has_processor(path: str | Path) -> bool:
    """Whether a model directory holds the processor files a multimodal model needs."""
    p = Path(path)
    return (p / "preprocessor_config.json").is_file() or (p / "processor_config.json").is_file()
