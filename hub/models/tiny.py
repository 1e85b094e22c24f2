"""Tiny random models and a tiny tokenizer, built from configs: no download, seconds to make.

Used by the test suite and by ``model=tiny_*`` configs for smoke runs of experiments.
"""
from __future__ import annotations

import functools

import torch

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
    """A small random config of one registered family."""
    from transformers import (Gemma3TextConfig, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config)

    common = dict(vocab_size=vocab_size, hidden_size=d, intermediate_size=2 * d, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    if family == "llama":
        return LlamaConfig(**common)
    if family == "mistral":
        return MistralConfig(**common, sliding_window=None)
    if family == "qwen2":
        return Qwen2Config(**common)
    if family == "gemma3":
        return Gemma3TextConfig(**common, head_dim=8, sliding_window=16, final_logit_softcapping=30.0,
                                layer_types=None)
    if family == "gpt2":
        return GPT2Config(vocab_size=vocab_size, n_embd=d, n_layer=layers, n_head=4, n_positions=256,
                          bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    raise KeyError(f"no tiny config for family {family!r}; known: llama, mistral, qwen2, gemma3, gpt2")


TINY_FAMILIES = ("llama", "mistral", "qwen2", "gemma3", "gpt2")


def tiny_model(family: str = "llama", seed: int = 0, **kw):
    """A HubModel over a random tiny model of ``family`` with the tiny tokenizer."""
    from transformers import AutoModelForCausalLM

    from hub.models.model import HubModel

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, **kw), dtype=torch.float32)
    model.eval()
    return HubModel(model, tiny_tokenizer(), name=f"tiny_{family}")
