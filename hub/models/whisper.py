"""Whisper in the hub: encoder states per layer, and the decoder as a HubModel for the lens.

The decoder is Whisper's language model: a :class:`WhisperHub` is a HubModel whose blocks are
the decoder layers (family ``whisper`` in hub/models/families.py: body ``model.decoder``, final
norm ``layer_norm``, unembedding ``proj_out``), so capture, hooks and the logit lens work as
for any LM. Its batch forward feeds the token batch to the decoder (``decoder_input_ids``,
mask and position ids of the left-padded batch) and the audio through ``extra``: either
``input_features [1, mel, 3000]`` or precomputed ``encoder_hidden_states [1, 1500, d]``.

Encoder states are read with hooks on the encoder layers, in the project's convention
(0 = convolution + position embedding output, k = output of encoder block k, the final
encoder layer norm is not applied) and averaged over the frames that hold speech: Whisper
pads every clip to 30 s, and frame t covers 20 ms, so a clip of s seconds fills the first
``ceil(50 s)`` of the 1500 frames.
"""
from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from hub.models.model import Batch, HubModel, as_dtype

SAMPLE_RATE = 16_000
FRAMES_PER_SECOND = 50  # encoder frames per second of audio (10 ms hop, stride-2 conv)
WINDOW_SECONDS = 30.0


@dataclass
class WhisperHub(HubModel):
    """Whisper's decoder as a HubModel, plus its feature extractor and encoder access."""

    feature_extractor: object = None
    _memo: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------ forward
    def forward_batch(self, batch: Batch, **kwargs) -> object:
        extra = dict(batch.extra)
        inputs = dict(decoder_input_ids=batch.input_ids, decoder_attention_mask=batch.attention_mask,
                      decoder_position_ids=batch.position_ids, use_cache=False)
        if "encoder_hidden_states" in extra:
            inputs["encoder_outputs"] = (extra.pop("encoder_hidden_states"),)
        elif "input_features" in extra:
            inputs["input_features"] = extra.pop("input_features")
        else:
            raise ValueError("Whisper needs audio: pass input_features or encoder_hidden_states in extra")
        return self.model(**inputs, **extra, **kwargs)

    # ------------------------------------------------------------ facts
    @property
    def encoder(self) -> torch.nn.Module:
        return self.model.model.encoder

    @property
    def n_encoder_layers(self) -> int:
        return len(self.encoder.layers)

    @property
    def window_seconds(self) -> float:
        return float(getattr(self.feature_extractor, "chunk_length", WINDOW_SECONDS))

    def token_id(self, token: str) -> int:
        """Id of a special token such as ``<|fr|>``; error if the vocabulary lacks it."""
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or self.tokenizer.convert_ids_to_tokens(tid) != token:
            raise KeyError(f"{self.name}: the tokenizer has no token {token!r}")
        return int(tid)

    def prefix(self, lang: str, task: str = "transcribe") -> list[int]:
        """Decoder prompt ``<|startoftranscript|><|lang|><|task|><|notimestamps|>``."""
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task={task!r}: expected 'transcribe' or 'translate'")
        return [self.token_id(t) for t in ("<|startoftranscript|>", f"<|{lang}|>", f"<|{task}|>", "<|notimestamps|>")]

    def text_ids(self, text: str) -> list[int]:
        """Transcript tokens as Whisper writes them (a leading space, no special tokens)."""
        return self.tokenizer.encode(" " + text.strip(), add_special_tokens=False)

    # ------------------------------------------------------------ audio
    def features(self, waves: Sequence[np.ndarray]) -> Tensor:
        """Log-mel features padded to the 30 s window: ``[n, mel, 3000]`` (fp32)."""
        for i, w in enumerate(waves):
            if len(w) > self.window_seconds * SAMPLE_RATE:
                raise ValueError(f"clip {i} is {len(w) / SAMPLE_RATE:.1f} s, longer than Whisper's "
                                 f"{self.window_seconds:.0f} s window; load it with max_seconds to truncate")
        out = self.feature_extractor([np.asarray(w, dtype=np.float32) for w in waves], sampling_rate=SAMPLE_RATE,
                                     return_tensors="pt")
        return out["input_features"].to(self.device, self.unembed.weight.dtype)

    @staticmethod
    def speech_frames(seconds: float, total: int = 1500) -> int:
        """Encoder frames covering ``seconds`` of audio (at least 1, at most ``total``)."""
        return max(1, min(total, math.ceil(seconds * FRAMES_PER_SECOND)))

    @torch.no_grad()
    def encode(self, waves: Sequence[np.ndarray], layers: Sequence[int] | str | None = None, batch_size: int = 8
               ) -> tuple[Tensor, Tensor | None]:
        """Run the encoder on clips.

        Returns the encoder output the decoder reads ``[n, 1500, d]`` and, if ``layers`` is
        given, per-layer states averaged over each clip's speech frames ``[n, layer, d]``.
        """
        L = self.n_encoder_layers
        layer_list = list(range(L + 1)) if layers in ("all",) else (list(layers) if layers is not None else [])
        for k in layer_list:
            if not 0 <= k <= L:
                raise IndexError(f"encoder layer {k} is out of range 0..{L}")
        outs, means = [], []
        for s in range(0, len(waves), batch_size):
            chunk = waves[s:s + batch_size]
            feats = self.features(chunk)
            frames = [self.speech_frames(len(w) / SAMPLE_RATE, total=feats.shape[-1] // 2) for w in chunk]
            enc, mean = self._encode_cached(feats, frames, layer_list)
            outs.append(enc)
            if layer_list:
                means.append(mean)
        hidden = torch.cat(outs)
        return hidden, (torch.cat(means) if layer_list else None)

    def _encode_cached(self, feats: Tensor, frames: list[int], layer_list: list[int]) -> tuple[Tensor, Tensor | None]:
        """One encoder pass through the activation cache (``self.cache``) when one is attached:
        the output ``[b, 1500, d]`` and the speech-frame means ``[b, layer, d]`` are two entries."""
        keys = None
        if self.cache is not None:
            keys = [self.cache.key(self, [], layer_list, positions=f"whisper_encoder:{part}:{frames}",
                                   extra=[{"input_features": feats}]) for part in ("output", "means")]
            if None not in keys:
                enc, mean = self.cache.get(keys[0]), (self.cache.get(keys[1]) if layer_list else None)
                if enc is not None and (mean is not None or not layer_list):
                    return enc.to(self.device), mean
        enc, mean = self._encode_pass(feats, frames, layer_list)
        if keys is not None and None not in keys:
            self.cache.put(keys[0], enc.cpu(), model=self.name)
            if layer_list:
                self.cache.put(keys[1], mean, model=self.name)
        return enc, mean

    def _encode_pass(self, feats: Tensor, frames: list[int], layer_list: list[int]) -> tuple[Tensor, Tensor | None]:
        """Run the encoder with hooks averaging ``layer_list`` over each clip's speech frames."""
        w = torch.zeros(len(frames), feats.shape[-1] // 2, device=self.device)  # [b, frame]
        for i, f in enumerate(frames):
            w[i, :f] = 1.0 / f
        got: dict[int, Tensor] = {}
        handles = []

        def post(k):
            def hook(_m, _args, out):
                h = out[0] if isinstance(out, tuple) else out
                got[k] = torch.einsum("bt,btd->bd", w, h.float())
            return hook

        def pre(_m, args, kw):
            h = args[0] if args else kw["hidden_states"]
            got[0] = torch.einsum("bt,btd->bd", w, h.float())

        for k in layer_list:
            if k == 0:
                handles.append(self.encoder.layers[0].register_forward_pre_hook(pre, with_kwargs=True))
            else:
                handles.append(self.encoder.layers[k - 1].register_forward_hook(post(k)))
        try:
            enc = self.encoder(feats).last_hidden_state
        finally:
            for h in handles:
                h.remove()
        return enc, (torch.stack([got[k] for k in layer_list], 1).cpu() if layer_list else None)

    def encode_memo(self, waves: Sequence[np.ndarray], batch_size: int = 8, progress: bool = False
                    ) -> tuple[Tensor, Tensor]:
        """:meth:`encode` with every layer, memoised per clip (experiments share encoder passes).

        Returns the encoder output ``[n, 1500, d]`` and speech-frame means ``[n, layer, d]``.
        """
        from tqdm.auto import tqdm

        keys = [hashlib.sha1(np.ascontiguousarray(w, dtype=np.float32).tobytes()).hexdigest() for w in waves]
        todo = [keys.index(k) for k in dict.fromkeys(keys) if k not in self._memo]
        for s in tqdm(range(0, len(todo), batch_size), desc=f"encode {self.name}", disable=not progress, leave=False):
            idx = todo[s:s + batch_size]
            hidden, means = self.encode([waves[i] for i in idx], layers="all", batch_size=batch_size)
            for j, i in enumerate(idx):
                self._memo[keys[i]] = (hidden[j].cpu(), means[j])
        return (torch.stack([self._memo[k][0] for k in keys]).to(self.device),
                torch.stack([self._memo[k][1] for k in keys]))

    @torch.no_grad()
    def transcribe(self, waves: Sequence[np.ndarray], lang: str, task: str = "transcribe", max_new_tokens: int = 40
                   ) -> list[str]:
        """Greedy decoding with the language and task forced (a check that the model hears)."""
        hidden, _ = self.encode(waves)
        prefix = torch.tensor([self.prefix(lang, task)] * len(waves), device=self.device)
        ids, _ = self.greedy(hidden, prefix, max_new_tokens)
        eot = self.token_id("<|endoftext|>")
        texts = []
        for row in ids[:, prefix.shape[1]:].tolist():
            row = row[:row.index(eot)] if eot in row else row
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts

    @torch.no_grad()
    def greedy(self, hidden: Tensor, prefix: Tensor, max_new_tokens: int) -> tuple[Tensor, Tensor]:
        """Greedy decoding with the KV cache (cross-attention K/V computed once).

        ``hidden: [n, frames, d]`` encoder output, ``prefix: [n, p]`` forced tokens. Returns the
        ids ``[n, p + T]`` (finished rows padded with end-of-text) and each step's next-token
        logits ``[n, T, vocab]``. The cache goes in as ``cache=`` (transformers >= 5.24, where
        ``past_key_values=`` is deprecated, removed in 5.40) or ``past_key_values=`` before.
        """
        key = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        eot = self.token_id("<|endoftext|>")
        ids, step, past, steps = prefix, prefix, None, []
        done = torch.zeros(len(prefix), dtype=torch.bool, device=self.device)
        for _ in range(max_new_tokens):
            out = self.model(encoder_outputs=(hidden,), decoder_input_ids=step, use_cache=True, **{key: past})
            past = out[key]  # the output field has the same name as the keyword
            steps.append(out.logits[:, -1])
            nxt = out.logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eot), nxt)
            ids, step = torch.cat([ids, nxt[:, None]], 1), nxt[:, None]
            done |= nxt == eot
            if done.all():
                break
        return ids, torch.stack(steps, 1)


# ----------------------------------------------------------------------- loading
def load(path: str, dtype: str = "float32", device: str = "cpu", **_: object) -> WhisperHub:
    """Whisper and its processor from a store name, local directory or hub id."""
    from transformers import AutoFeatureExtractor, AutoTokenizer, WhisperForConditionalGeneration

    from hub.store import resolve

    where = resolve(path)
    try:
        fe = AutoFeatureExtractor.from_pretrained(where)
    except (OSError, ValueError) as e:
        raise ValueError(f"{where}: no Whisper feature extractor (preprocessor_config.json): {e}; Whisper needs its "
                         "processor to turn audio into log-mel features") from e
    tok = AutoTokenizer.from_pretrained(where)
    model = WhisperForConditionalGeneration.from_pretrained(where, dtype=as_dtype(dtype)).to(device)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return WhisperHub(model, tok, name=str(path), feature_extractor=fe)
