"""Per-family registry: where the decoder blocks, final norm and unembedding live.

One small record per architecture family (after nnterp's idea), so the rest of the
framework never hard-codes attribute paths. A family is looked up by the Hugging Face
``config.model_type``; an unknown family gets an error that says what to register.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn


@dataclass(frozen=True)
class Family:
    """Attribute paths (dotted, from the top-level HF model) of one architecture family.

    ``body`` is the decoder stack that owns ``blocks``, ``norm`` and ``embed`` (paths
    relative to the body). ``unembed`` is relative to the top-level model.
    """

    name: str
    model_types: tuple[str, ...]
    body: str
    blocks: str = "layers"
    norm: str = "norm"
    embed: str = "embed_tokens"
    unembed: str = "lm_head"
    # attribute of the nested text config, for multimodal wrappers (e.g. llava -> llama)
    text_config_attr: str | None = None
    # multimodal wrappers: where the media placeholder goes in a prompt ({image} or {audio}), and
    # which extra forward inputs a left-padded batch needs (a key of hub.models.vlm.BATCH_INPUTS)
    prompt: str = ""
    batch_inputs: str = "positions"
    notes: str = ""
    extra: dict = field(default_factory=dict)


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a family; each of its model types must be new."""
    for mt in family.model_types:
        if mt in FAMILIES:
            raise ValueError(f"model_type {mt!r} is already registered to family {FAMILIES[mt].name!r}")
        FAMILIES[mt] = family
    return family


# Causal LMs whose HF class is <X>ForCausalLM with .model.{layers,norm,embed_tokens} and .lm_head
register_family(Family("llama", ("llama", "mistral", "mixtral", "qwen2", "qwen3", "olmo2", "phi3", "smollm3"),
                       body="model"))
register_family(Family("gemma", ("gemma", "gemma2", "gemma3_text"), body="model",
                       notes="RMSNorm uses (1 + weight); embeddings scaled by sqrt(d); gemma2/3 softcap logits"))
register_family(Family("gpt2", ("gpt2",), body="transformer", blocks="h", norm="ln_f", embed="wte"))
# Vision-language models: hooks go on the language model inside. Gemma 3 marks image tokens with
# token_type_ids (they attend bidirectionally); Qwen2-VL needs 3-D M-RoPE position ids.
register_family(Family("gemma3_vlm", ("gemma3",), body="model.language_model", text_config_attr="text_config",
                       prompt="{image}", batch_inputs="token_type_ids"))
register_family(Family("llava", ("llava", "llava_next", "llava_onevision"), body="model.language_model",
                       text_config_attr="text_config", prompt="USER: {image}\n"))
register_family(Family("qwen2_vl", ("qwen2_vl", "qwen2_5_vl"), body="model.language_model",
                       text_config_attr="text_config", prompt="<|vision_start|>{image}<|vision_end|>",
                       batch_inputs="mrope"))
register_family(Family("idefics3", ("idefics3", "smolvlm"), body="model.text_model",
                       text_config_attr="text_config", prompt="{image}"))
# Audio-language model (transformers 5 path of the language model)
register_family(Family("qwen2_audio", ("qwen2_audio",), body="model.language_model", unembed="lm_head",
                       text_config_attr="text_config", prompt="<|audio_bos|>{audio}<|audio_eos|>"))
# Whisper: the decoder is the language model we read; proj_out is the unembedding
register_family(Family("whisper", ("whisper",), body="model.decoder", norm="layer_norm", unembed="proj_out"))


def get_attr(root: nn.Module, path: str) -> nn.Module:
    """Follow a dotted attribute path; raise AttributeError naming the missing step."""
    obj = root
    for part in path.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"{type(root).__name__} has no attribute path {path!r} (missing {part!r})")
        obj = getattr(obj, part)
    return obj


def family_for(model: nn.Module) -> Family:
    """The registered family of an HF model, by ``config.model_type``."""
    mt = getattr(getattr(model, "config", None), "model_type", None)
    if mt in FAMILIES:
        return FAMILIES[mt]
    known = ", ".join(sorted(FAMILIES))
    raise KeyError(
        f"model_type {mt!r} ({type(model).__name__}) is not in the family registry. Known: {known}. "
        "Register it with hub.models.families.register_family(Family(name, (model_type,), body=..., blocks=..., "
        "norm=..., embed=..., unembed=...)) giving the attribute paths of its decoder blocks, final norm, "
        "embedding and unembedding (see README, 'Adding a model family')."
    )
