"""All three Whisper experiments in one job, so each clip is encoded once.

1. Encoder: cross-lingual similarity of the same sentence spoken in different languages
   (experiments.whisper_encoder).
2. Decoder logit lens: spoken-language word vs its English translation while transcribing
   non-English speech (experiments.whisper_lens).
3. Decoder: audio vs text of the same sentence (experiments.whisper_audio_text).
"""
from __future__ import annotations

from experiments import whisper_audio_text, whisper_encoder, whisper_lens
from hub.context import RunContext


def run(ctx: RunContext) -> None:
    for step in (whisper_encoder, whisper_lens, whisper_audio_text):
        step.run(ctx)
