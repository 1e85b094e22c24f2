"""Model kind ``audio_lm``: audio-language models (Qwen2-Audio) as HubModels.

The processor expands the ``{audio}`` placeholder of the family's prompt (``Family.prompt``) into
one token per audio frame, which the model replaces with the audio encoder's features; capture
and the lens run on the inner language model as for a vision-language model (hub/models/vlm.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hub.models.model import as_dtype
from hub.models.vlm import (MMInput, MultimodalHubModel, ProcessorError, load_processor, placeholder_id,
                            placeholder_span, split_outputs)

DEFAULT_PROMPT = "<|audio_bos|>{audio}<|audio_eos|>"


@dataclass
class AudioLMHub(MultimodalHubModel):
    """A HubModel over an audio-text model plus its processor."""

    def encode_audio(self, wave: np.ndarray, prompt: str | None = None) -> MMInput:
        """Token ids, audio-token span and features of one 16 kHz clip in the family's prompt."""
        return encode_audio(self.processor, wave, prompt or self.family.prompt or DEFAULT_PROMPT,
                            token_id=self.audio_token_id)


def encode_audio(processor, wave: np.ndarray, prompt: str | None = DEFAULT_PROMPT,
                 token_id: int | None = None, sr: int = 16_000) -> MMInput:
    """Run the processor on one 16 kHz clip and a prompt with ``{audio}`` where it goes."""
    if getattr(processor, "feature_extractor", None) is None:
        raise ProcessorError(f"{type(processor).__name__} has no feature extractor; an audio-language model needs its "
                             "processor (preprocessor_config.json in the model directory)")
    prompt = prompt or DEFAULT_PROMPT
    if "{audio}" not in prompt:
        raise ValueError(f"audio prompt {prompt!r} must contain {{audio}} where the clip goes")
    token = processor.audio_token
    out = processor(text=[prompt.format(audio=token)], audio=[np.asarray(wave, dtype=np.float32)],
                    sampling_rate=sr, return_tensors="pt")
    ids, extra = split_outputs(out)
    span, pos = placeholder_span(ids, placeholder_id(processor, "audio_token", token_id), "audio")
    if len(pos) < 2:
        raise ValueError("the clip maps to a single audio token; Qwen2-Audio's merge path needs at least two "
                         "(use a clip longer than ~40 ms)")
    return MMInput(ids, span, pos, extra)


def load(path: str, dtype: str = "float32", device: str = "cpu", **_: object) -> AudioLMHub:
    """Qwen2-Audio and its processor (store name, directory or hub id)."""
    from transformers import Qwen2AudioForConditionalGeneration

    from hub.store import resolve

    where = resolve(path)
    processor = load_processor(where)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(where, dtype=as_dtype(dtype)).to(device)
    return AudioLMHub(model, processor.tokenizer, name=str(path), processor=processor)
