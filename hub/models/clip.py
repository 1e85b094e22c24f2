"""open_clip dual encoders: per-layer tower states and the joint embeddings.

A CLIP-style model has two towers that meet only at the end, in the joint embedding space.
We read each tower's residual stream with hooks on its ``transformer.resblocks`` (layer 0 =
input of block 1 (after ``ln_pre`` for the image tower), k = output of block k) at the
position the tower itself pools: the class token (or the patch mean, for ``avg`` pooling)
for images, the end-of-text token (``argmax``/``eos`` pooling, or first/last) for text, and
the final normalised embeddings ``encode_image`` / ``encode_text``. Towers without
resblocks (timm or Hugging Face towers) give the final embeddings only.

Weights: ``pretrained`` is an open_clip tag (needs the download cache) or a local checkpoint
file; ``local-dir:/path`` loads ``open_clip_config.json`` plus weights from a folder.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from hub.errors import UserError
from hub.layers import select_layers


@dataclass
class ClipModel:
    """An open_clip model with its image transform and tokenizer."""

    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    name: str = "clip"
    # optional activation cache (hub.cache.ActivationCache): consulted by image_states/text_states when set
    cache: object | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.model.eval()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -------------------------------------------------------------- towers
    def _text_tower(self) -> tuple[torch.nn.Module | None, str, int | None]:
        """(module with .transformer.resblocks, pool type, eos id) of the text tower."""
        m = self.model
        if hasattr(m, "transformer") and hasattr(m.transformer, "resblocks"):
            return m, getattr(m, "text_pool_type", "argmax"), getattr(m, "text_eos_id", None)
        text = getattr(m, "text", None)
        if text is not None and hasattr(getattr(text, "transformer", None), "resblocks"):
            pool = "last" if getattr(text, "cls_emb", None) is not None else getattr(text, "pool_type", "argmax")
            return text, pool, getattr(text, "eos_id", None)
        return None, "", None

    @property
    def image_blocks(self) -> torch.nn.ModuleList | None:
        t = getattr(getattr(self.model, "visual", None), "transformer", None)
        return getattr(t, "resblocks", None)

    @property
    def text_blocks(self) -> torch.nn.ModuleList | None:
        tower, _, _ = self._text_tower()
        return tower.transformer.resblocks if tower is not None else None

    # ------------------------------------------------------------- capture
    @staticmethod
    def _capture(blocks: torch.nn.ModuleList | None, layers: list[int], read) -> tuple[dict[int, Tensor], list]:
        got: dict[int, Tensor] = {}
        handles = []
        if blocks is None:
            return got, handles

        def post(k):
            def hook(_m, _a, out):
                got[k] = read(out[0] if isinstance(out, tuple) else out)
            return hook

        def pre(_m, args, kwargs):
            got[0] = read(args[0] if args else kwargs["q_x"] if "q_x" in kwargs else next(iter(kwargs.values())))

        for k in layers:
            handles.append(blocks[0].register_forward_pre_hook(pre, with_kwargs=True) if k == 0
                           else blocks[k - 1].register_forward_hook(post(k)))
        return got, handles

    def _layers(self, blocks, layers) -> list[int]:
        if blocks is None:
            return []
        return select_layers(layers, len(blocks), self.name)

    def _run(self, blocks, layer_list: list[int], read, encode) -> tuple[Tensor | None, Tensor]:
        """Run ``encode()`` with hooks reading ``layer_list``: (states ``[b, layer, w]`` or None,
        joint embeddings ``[b, embed]``); hooks removed even on an exception."""
        got, handles = self._capture(blocks, layer_list, read)
        try:
            emb = encode().float().cpu()
        finally:
            for h in handles:
                h.remove()
        return (torch.stack([got[k] for k in layer_list], 1).cpu() if layer_list else None), emb

    def _run_cached(self, tower: str, inputs: Tensor, blocks, layer_list: list[int], read, encode
                    ) -> tuple[Tensor | None, Tensor]:
        """:meth:`_run` through the activation cache (``self.cache``) when one is attached; the
        key covers the model, the tower, the layers and the tower's input tensor (pixels or ids)."""
        keys = None
        if self.cache is not None:
            keys = [self.cache.key(self, [], layer_list, positions=f"open_clip:{tower}:{part}",
                                   extra=[{"inputs": inputs}]) for part in ("states", "embeds")]
            if None not in keys:
                states = self.cache.get(keys[0]) if layer_list else None
                emb = self.cache.get(keys[1])
                if emb is not None and (states is not None or not layer_list):
                    return states, emb
        states, emb = self._run(blocks, layer_list, read, encode)
        if keys is not None and None not in keys:
            if layer_list:
                self.cache.put(keys[0], states, model=self.name)
            self.cache.put(keys[1], emb, model=self.name)
        return states, emb

    @torch.no_grad()
    def image_states(self, images: Sequence, layers: Sequence[int] | str = "all", batch_size: int = 32
                     ) -> tuple[Tensor | None, Tensor]:
        """Per-layer image-tower states at the pooled position ``[n, layer, width]`` (None
        without resblocks) and the normalised joint embeddings ``[n, embed]``."""
        blocks = self.image_blocks
        layer_list = self._layers(blocks, layers)
        pool = getattr(self.model.visual, "pool_type", "tok")

        def read(h: Tensor) -> Tensor:  # [b, 1 + patches, w] (batch first)
            if pool == "tok":
                return h[:, 0].float()
            return (h[:, 1:] if pool == "avg" else h).mean(1).float()

        states, embeds = [], []
        for s in range(0, len(images), batch_size):
            x = torch.stack([self.preprocess(im.convert("RGB")) for im in images[s:s + batch_size]]).to(self.device)
            st, emb = self._run_cached("image", x, blocks, layer_list, read,
                                       lambda: self.model.encode_image(x, normalize=True))
            states.append(st)
            embeds.append(emb)
        return (torch.cat(states) if layer_list else None), torch.cat(embeds)

    @torch.no_grad()
    def text_states(self, texts: Sequence[str], layers: Sequence[int] | str = "all", batch_size: int = 64
                    ) -> tuple[Tensor | None, Tensor]:
        """Per-layer text-tower states at the pooled token ``[n, layer, width]`` and the
        normalised joint embeddings ``[n, embed]``."""
        from open_clip.transformer import text_global_pool

        tower, pool, eos = self._text_tower()
        blocks = self.text_blocks
        layer_list = self._layers(blocks, layers)
        states, embeds = [], []
        for s in range(0, len(texts), batch_size):
            tok = self.tokenizer(list(texts[s:s + batch_size])).to(self.device)

            def read(h: Tensor, tok=tok) -> Tensor:
                return text_global_pool(h, tok, pool, eos_token_id=eos).float()

            st, emb = self._run_cached("text", tok, blocks, layer_list, read,
                                       lambda: self.model.encode_text(tok, normalize=True))
            states.append(st)
            embeds.append(emb)
        return (torch.cat(states) if layer_list else None), torch.cat(embeds)


# -------------------------------------------------------------------- loading
PRECISIONS = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}  # model.dtype -> open_clip precision


def load(model_name: str, dtype: str = "float32", device: str = "cpu", pretrained: str | None = None,
         **_: object) -> ClipModel:
    """``open_clip.create_model_and_transforms`` plus the tokenizer; errors say what is missing.

    ``model_name`` is an open_clip architecture (``ViT-B-32``) or ``local-dir:/folder``.
    """
    import open_clip

    if str(dtype) not in PRECISIONS:
        raise UserError(f"model.dtype={dtype!r} for an open_clip model: expected one of {', '.join(PRECISIONS)}")
    precision = PRECISIONS[str(dtype)]
    if pretrained and not model_name.startswith(("local-dir:", "hf-hub:")):
        p = Path(pretrained)
        if (p.suffix or "/" in pretrained) and not p.is_file():
            raise FileNotFoundError(f"{pretrained}: no such open_clip checkpoint file")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained,
                                                                     device=device, precision=precision)
    except RuntimeError as e:
        raise RuntimeError(f"open_clip could not build {model_name!r} with pretrained={pretrained!r}: {e} "
                           "(offline: pass a local checkpoint path, or local-dir:/folder with open_clip_config.json)"
                           ) from e
    return ClipModel(model, preprocess, open_clip.get_tokenizer(model_name), model_name)
