"""Model kind ``vlm``: vision-language models as HubModels, hooks on the language model inside.

A multimodal model (LLaVA, Gemma 3, Qwen2-VL, Idefics3/SmolVLM; Qwen2-Audio in hub/models/audio_lm.py)
is loaded with its processor. The processor expands the image (or audio) placeholder into one
token per image patch (audio frame); the model replaces those token embeddings with the encoder's
features. We keep the expanded token ids, the span of placeholder tokens and the encoder inputs
(``pixel_values`` ...) per item, and the ordinary :class:`hub.models.model.HubModel` capture runs
the top-level model with hooks on the inner language model's blocks. The family record
(hub/models/families.py) says where the placeholder goes in a prompt (``Family.prompt``) and what
the batch forward adds for left-padded batches (``Family.batch_inputs``, a key of BATCH_INPUTS):

* ``token_type_ids`` (Gemma 3): 1 at image tokens; image tokens attend bidirectionally;
* ``mrope`` (Qwen2-VL): 3-D M-RoPE position ids from ``get_rope_index`` (plain 1-D
  ``position_ids`` would give every image token a text position) plus ``mm_token_type_ids``;
  text-only batches keep the 1-D ids, which the model broadcasts to its three rotary sections;
* ``positions`` (LLaVA, Idefics3, Qwen2-Audio): the usual ``position_ids``.

Layer convention as everywhere: 0 = embeddings entering the language model (image features
already merged in), k = output of language-model block k.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from hub.models.model import Batch, HubModel, as_dtype

# Token-aligned processor outputs: rebuilt from the padded batch, never stacked per item.
TOKEN_ALIGNED = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "position_ids")

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
        inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False, **batch.extra)
        inputs.update(BATCH_INPUTS[self.family.batch_inputs](self, batch))
        return self.model(**inputs, **kwargs)

    # ------------------------------------------------------------------ inputs
    def encode_image(self, image, prompt: str | None = None) -> MMInput:
        """Token ids, image-token span and pixel inputs of one image in the family's prompt."""
        return encode_image(self.processor, image, prompt or self.family.prompt or "{image}",
                            token_id=self.image_token_id)


# ------------------------------------------------------------- batch forward inputs
def _positions(hm: MultimodalHubModel, batch: Batch) -> dict[str, Tensor]:
    return {"position_ids": batch.position_ids}


def _token_type_ids(hm: MultimodalHubModel, batch: Batch) -> dict[str, Tensor]:
    return {"position_ids": batch.position_ids, "token_type_ids": (batch.input_ids == hm.image_token_id).long()}


def _mrope(hm: MultimodalHubModel, batch: Batch) -> dict[str, Tensor]:
    ids = batch.input_ids
    mm = (ids == hm.image_token_id).int()
    if hm.video_token_id is not None:
        mm = mm + 2 * (ids == hm.video_token_id).int()
    if "image_grid_thw" not in batch.extra:
        return {"position_ids": batch.position_ids, "mm_token_type_ids": mm}
    pos, _ = hm.model.model.get_rope_index(ids, mm_token_type_ids=mm, image_grid_thw=batch.extra["image_grid_thw"],
                                           attention_mask=batch.attention_mask)
    return {"position_ids": pos, "mm_token_type_ids": mm}  # pos [3, batch, seq]


# Family.batch_inputs -> what the language model needs beside ids, mask and encoder inputs
BATCH_INPUTS: dict[str, Callable[[MultimodalHubModel, Batch], dict[str, Tensor]]] = {
    "positions": _positions, "token_type_ids": _token_type_ids, "mrope": _mrope}


# ------------------------------------------------------------------------ encoding
def placeholder_span(ids: list[int], token_id: int, what: str) -> tuple[tuple[int, int], list[int]]:
    pos = [i for i, t in enumerate(ids) if t == token_id]
    if not pos:
        raise ProcessorError(f"the processor output has no {what} tokens (id {token_id}); does the prompt contain "
                             f"the {what} placeholder?")
    if pos[-1] - pos[0] + 1 != len(pos):
        warnings.warn(f"{what} tokens are not contiguous (e.g. image splitting with row/column markers); the mean "
                      f"span {pos[0]}..{pos[-1]} includes the markers between them", stacklevel=3)
    return (pos[0], pos[-1] + 1), pos


def split_outputs(out) -> tuple[list[int], dict[str, Tensor]]:
    ids = out["input_ids"][0].tolist()
    extra = {k: v for k, v in out.items() if k not in TOKEN_ALIGNED and isinstance(v, Tensor)}
    return ids, extra


def placeholder_id(processor, attr: str, token_id: int | None) -> int:
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
    ids, extra = split_outputs(out)
    span, pos = placeholder_span(ids, placeholder_id(processor, "image_token", token_id), "image")
    return MMInput(ids, span, pos, extra)


# -------------------------------------------------------------------------- loading
def load_processor(where: str | Path, what: str = "image processor"):
    """The model's processor; a clear error when the directory lacks its files."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(where)
    except (OSError, ValueError, TypeError) as e:
        raise ProcessorError(f"{where}: cannot load the model's processor ({e}); a multimodal model needs its "
                             "processor files (preprocessor_config.json, tokenizer)") from e
    if not (hasattr(processor, "image_processor") or hasattr(processor, "feature_extractor")):
        raise ProcessorError(f"{where}: AutoProcessor gave {type(processor).__name__}, which has no image processor "
                             "or feature extractor; the model directory lacks preprocessor_config.json")
    tok = processor.tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return processor


def load(path: str, dtype: str = "float32", device: str = "cpu", **_: object) -> MultimodalHubModel:
    """An image-text model and its processor (store name, directory or hub id)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from hub.store import resolve

    where = resolve(path)
    processor = load_processor(where)
    model_type = AutoConfig.from_pretrained(where).model_type
    if model_type == "qwen2_audio":
        raise ValueError(f"{path}: {model_type} is an audio-language model; use model.kind: audio_lm")
    model = AutoModelForImageTextToText.from_pretrained(where, dtype=as_dtype(dtype)).to(device)
    return MultimodalHubModel(model, processor.tokenizer, name=str(path), processor=processor)


def model_dir_has_processor(path: str | Path) -> bool:
    """Whether a model directory holds the processor files a multimodal model needs."""
    p = Path(path)
    return (p / "preprocessor_config.json").is_file() or (p / "processor_config.json").is_file()
