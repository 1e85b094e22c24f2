"""The lens interface and its streamed readout (shared by every lens).

A lens reads the residual state at layer k as a next-token distribution. Following
tuned-lens's ``Lens`` / ``LogitLens`` split, a lens is one method, :meth:`Lens.transform`:
it maps states at layer k into the basis the model's last layer writes (the logit lens:
unchanged; a tuned lens: ``h + A_k h + b_k``; a patchscope: the last-layer state of a target
prompt with ``h`` patched in). Everything after it is shared and lives here: final norm +
unembedding, and the streamed reductions.

All layers of all items go through one stacked matmul ``[items*layers, d] @ W_U^T`` (in row
chunks that bound memory), never one matmul per layer. The reductions (:meth:`Lens.reduce`,
:meth:`Lens.target_logprob`) stream that matmul in cache-sized vocabulary blocks and merge
per-block log-sum-exps, so no ``[rows, vocab]`` tensor is formed. The final norm is an explicit switch,
on by default (as tuned-lens and Wendler et al.); the semantic-hub paper's code leaves it off
for intermediate layers. Our captured states are raw block outputs, so the norm is applied
exactly once; do not feed HF's last ``hidden_states`` entry (already normed) with norm on.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from hub.lens.energy import TokenEnergy
from hub.models import HubModel

LayerSpec = Sequence[int] | None


class Lens(ABC):
    """Read ``[..., d]`` states at given layers as next-token logits / log-probabilities.

    Subclasses implement :meth:`transform` (and set ``name``); ``needs_layers`` says whether
    the transform depends on the layer (then every call must say which layers the states are
    from). The readout methods stream the unembedding in row and vocabulary chunks.
    """

    name: str = "lens"
    needs_layers: bool = False

    def __init__(self, hm: HubModel, apply_norm: bool = True, max_chunk_bytes: int = 512 * 2**20,
                 vocab_chunk_bytes: int = 5 * 2**20):
        self.hm = hm
        self.apply_norm = apply_norm
        self.max_chunk_bytes = max_chunk_bytes
        self.vocab_chunk_bytes = vocab_chunk_bytes
        self._energy: TokenEnergy | None = None

    @abstractmethod
    def transform(self, states: Tensor, layers: LayerSpec = None) -> Tensor:
        """States at ``layers`` -> states the final norm + unembedding read, same shape.

        ``states [..., layer, d]`` when ``layers`` is given (axis -2 is the layer axis, one
        label per entry), else ``[..., d]`` from any layer (layer-free lenses only).
        """

    def _transformed(self, states: Tensor, layers: LayerSpec) -> Tensor:
        if layers is None:
            if self.needs_layers:
                raise ValueError(f"the {self.name} lens depends on the layer: pass layers= (one per entry of "
                                 "the states' layer axis)")
        elif states.dim() < 2 or states.shape[-2] != len(layers):
            raise ValueError(f"layers: {len(layers)} labels for states of shape {tuple(states.shape)}; expected "
                             "[..., layer, d] with one label per layer")
        return self.transform(states, layers)

    @property
    def weight(self) -> Tensor:
        return self.hm.unembed.weight

    def _rows_per_chunk(self) -> int:
        return max(1, self.max_chunk_bytes // (4 * self.hm.vocab_size))

    @property
    def device(self) -> torch.device:
        """The unembedding's device (its accelerate execution device when its weights are offloaded)."""
        w = self.weight
        if w.device.type == "meta":
            dev = getattr(getattr(self.hm.unembed, "_hf_hook", None), "execution_device", None)
            return torch.device(dev if dev is not None else "cpu")
        return w.device

    @torch.no_grad()
    def normed(self, states: Tensor) -> Tensor:
        """Final norm (if on), in the model's dtype as the model runs it, then fp32. ``[..., d] -> [..., d]``.

        This is where a half-precision model's lens upcasts: the norm's output becomes fp32 and
        the unembedding matmul (:meth:`_logit_blocks`) runs in fp32 on fp32 weight blocks.
        """
        h = states.to(device=self.device, dtype=self.hm.dtype)
        if self.apply_norm:
            h = self.hm.final_norm(h)
        return h.float()

    @torch.no_grad()
    def logits(self, states: Tensor, layers: LayerSpec = None) -> Tensor:
        """``[..., d] -> [..., vocab]`` fp32 logits (softcapped where the config says so)."""
        states = self._transformed(states, layers)
        shape = states.shape[:-1]
        flat = states.reshape(-1, states.shape[-1])
        out = torch.empty(flat.shape[0], self.hm.vocab_size, dtype=torch.float32)
        step = self._rows_per_chunk()
        for i in range(0, flat.shape[0], step):
            out[i:i + step] = self._logits_rows(flat[i:i + step]).cpu()
        return out.reshape(*shape, -1)

    def _logits_rows(self, rows: Tensor) -> Tensor:
        return next(self._logit_blocks(self.normed(rows), step=self.hm.vocab_size))[1]

    def _vocab_step(self, rows: int) -> int:
        """Vocabulary columns per streamed logit block: ``rows x step`` fp32 stays near
        ``vocab_chunk_bytes`` (cache-sized), so the passes after the matmul stay in cache."""
        return int(min(self.hm.vocab_size, max(128, self.vocab_chunk_bytes // (4 * max(rows, 1)))))

    def _logit_blocks(self, h: Tensor, step: int | None = None):
        """Yield ``(v0, z)`` with ``z [rows, step]`` fp32 logits of vocabulary ids ``v0..``
        for normed states ``h [rows, d]``; a non-Linear unembedding yields one full block."""
        un = self.hm.unembed
        W, b = self.weight, getattr(un, "bias", None)
        if not isinstance(un, torch.nn.Linear) or W.device.type == "meta":  # offloaded: accelerate's hook loads W
            yield 0, self._cap(un(h.to(self.hm.dtype)).float())
            return
        step = step or self._vocab_step(h.shape[0])
        for v0 in range(0, W.shape[0], step):  # fp32 matmul: half-precision weight blocks are upcast here
            Wb = W[v0:v0 + step].float()
            bb = None if b is None else b[v0:v0 + step].float()
            yield v0, self._cap(torch.nn.functional.linear(h, Wb, bb))

    @staticmethod
    def _shifted_exp(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For a logit block ``z [rows, block]``: its row max ``m``, ``e = exp(z - m)`` and the
        row sums ``S`` of ``e``; ``z`` becomes ``z - m`` in place, floored at -80 (exp(-80) ~
        2e-35, so nothing is lost, and exp of arguments below ~-87 takes a slow underflow path,
        5x slower on our CPUs)."""
        m = z.amax(-1, keepdim=True)
        e = torch.exp(z.sub_(m).clamp_(min=-80.0))
        return m.squeeze(-1), e, e.sum(-1)

    def _cap(self, z: Tensor) -> Tensor:
        cap = self.hm.softcap
        return z.div_(cap).tanh_().mul_(cap) if cap else z

    @torch.no_grad()
    def reduce(self, states: Tensor, token_sets: Sequence[Sequence[Sequence[int]]] | None = None,
               top_k: int = 0, layers: LayerSpec = None) -> dict[str, Tensor]:
        """Per state: entropy (bits), optional summed probability of token sets, top-k tokens.

        ``states``: ``[n, layer, d]`` (from ``layers``, needed by layer-dependent lenses); ``token_sets``: per item a list of sets, e.g.
        ``[[target_ids, english_ids], ...]``. Returns ``entropy [n, layer]``, ``set_prob
        [n, layer, sets]``, ``top_ids``/``top_probs`` ``[n, layer, k]``.

        The logits are streamed in vocabulary blocks and reduced online (log-sum-exp and the
        mean logit under the softmax, merged across blocks), so neither ``[rows, vocab]``
        logits nor probabilities are ever materialised: the cost is the stacked matmul plus
        a few passes over cache-resident blocks.
        """
        states = self._transformed(states, layers)
        n, L, d = states.shape
        R = n * L
        flat = states.reshape(R, d)
        n_sets = len(token_sets[0]) if token_sets else 0
        V = self.hm.vocab_size
        if n_sets:
            if len(token_sets) != n:
                raise ValueError(f"token_sets: got {len(token_sets)} items for {n} states")
            r_all, t_all, s_all = [], [], []  # one entry per (state row, token): row, token, set
            for it, sets in enumerate(token_sets):
                if len(sets) != n_sets:
                    raise ValueError(f"token_sets[{it}] has {len(sets)} sets, expected {n_sets}")
                toks = [int(t) for ids in sets for t in ids]
                bad = [t for t in toks if not 0 <= t < V]
                if bad:
                    raise ValueError(f"token_sets[{it}]: ids {bad[:5]} outside the vocabulary 0..{V - 1}")
                t = torch.tensor(toks, dtype=torch.long)
                s = torch.tensor([k for k, ids in enumerate(sets) for _ in ids], dtype=torch.long)
                rows = torch.arange(it * L, (it + 1) * L).repeat_interleave(len(toks))
                r_all.append(rows)
                t_all.append(t.repeat(L))
                s_all.append(s.repeat(L))
            r_all, t_all, s_all = torch.cat(r_all), torch.cat(t_all), torch.cat(s_all)
        ent = torch.empty(R)
        set_prob = torch.zeros(R, n_sets)
        top_ids = torch.zeros(R, top_k, dtype=torch.long)
        top_p = torch.zeros(R, top_k)
        step = self._rows_per_chunk()
        for i in range(0, R, step):
            j = min(i + step, R)
            h = self.normed(flat[i:j])
            dev = h.device
            if n_sets:
                sel = (r_all >= i) & (r_all < j)
                pr, pt, ps = (r_all[sel] - i).to(dev), t_all[sel].to(dev), s_all[sel].to(dev)
                pz = torch.empty(len(pr), device=dev)
            lse = torch.full((j - i,), -math.inf, device=dev)  # running log-sum-exp of the logits
            mz = torch.zeros(j - i, device=dev)  # running softmax-weighted mean logit
            tv = torch.empty(j - i, 0, device=dev)
            ti = torch.empty(j - i, 0, dtype=torch.long, device=dev)
            for v0, z in self._logit_blocks(h):  # z: [rows, block]
                v1 = v0 + z.shape[1]
                if n_sets:
                    inb = (pt >= v0) & (pt < v1)
                    pz[inb] = z[pr[inb], pt[inb] - v0]
                if top_k:
                    bv, bi = z.topk(min(top_k, z.shape[1]), dim=-1)
                    tv, idx = torch.cat([tv, bv], 1).topk(min(top_k, tv.shape[1] + bv.shape[1]), dim=-1)
                    ti = torch.cat([ti, bi + v0], 1).gather(1, idx)
                m, e, S = self._shifted_exp(z)  # z is now z - m
                l_b = m + S.log()  # block log-sum-exp
                m_b = m + torch.linalg.vecdot(e, z) / S  # block softmax mean of z
                new = torch.logaddexp(lse, l_b)
                mz = mz * torch.exp(lse - new) + m_b * torch.exp(l_b - new)
                lse = new
            # entropy = log-sum-exp - E_p[z], in nats -> bits
            ent[i:j] = ((lse - mz) / math.log(2)).cpu()
            if n_sets:
                acc = torch.zeros(j - i, n_sets, device=dev)
                acc.index_put_((pr, ps), torch.exp(pz - lse[pr]), accumulate=True)
                set_prob[i:j] = acc.cpu()
            if top_k:
                top_ids[i:j], top_p[i:j] = ti.cpu(), torch.exp(tv - lse[:, None]).cpu()
        out = {"entropy": ent.reshape(n, L)}
        if n_sets:
            out["set_prob"] = set_prob.reshape(n, L, n_sets)
        if top_k:
            out["top_ids"], out["top_probs"] = top_ids.reshape(n, L, top_k), top_p.reshape(n, L, top_k)
        return out

    @torch.no_grad()
    def target_logprob(self, states: Tensor, targets: Tensor, layers: LayerSpec = None) -> Tensor:
        """log p(target) of each state's next-token distribution, streamed like :meth:`reduce`.

        ``states [..., d]``, ``targets [...]`` (vocabulary ids) -> ``[...]`` fp32. The same
        numbers as a log-softmax over full logits (e.g. a perplexity), without the
        ``[rows, vocab]`` tensor.
        """
        states = self._transformed(states, layers)
        if states.shape[:-1] != targets.shape:
            raise ValueError(f"targets must have shape {tuple(states.shape[:-1])} (states without d); "
                             f"got {tuple(targets.shape)}")
        V = self.hm.vocab_size
        flat, tgt = states.reshape(-1, states.shape[-1]), targets.reshape(-1).long()
        if len(tgt) and not (0 <= int(tgt.min()) and int(tgt.max()) < V):
            raise ValueError(f"targets: ids outside the vocabulary 0..{V - 1}")
        out = torch.empty(len(tgt))
        step = self._rows_per_chunk()
        for i in range(0, len(tgt), step):
            h = self.normed(flat[i:i + step])
            t = tgt[i:i + step].to(h.device)
            zt = torch.empty(len(t), device=h.device)
            lse = torch.full((len(t),), -math.inf, device=h.device)
            rows = torch.arange(len(t), device=h.device)
            for v0, z in self._logit_blocks(h):
                inb = (t >= v0) & (t < v0 + z.shape[1])
                zt[inb] = z[rows[inb], t[inb] - v0]
                m, _, S = self._shifted_exp(z)
                lse = torch.logaddexp(lse, m + S.log())
            out[i:i + step] = (zt - lse).cpu()
        return out.reshape(targets.shape)

    # ----------------------------------------------------------- token energy
    @torch.no_grad()
    def token_energy(self, states: Tensor, layers: LayerSpec = None) -> Tensor:
        """Wendler et al.'s token energy of the lens's view of ``[..., d]`` states -> ``[...]``
        (hub.lens.energy; for the logit lens, of the states themselves)."""
        if self._energy is None:
            self._energy = TokenEnergy(self.hm)
        return self._energy(self._transformed(states, layers))


LENSES: dict[str, type[Lens]] = {}


def register_lens(name: str):
    """Class decorator: make a lens buildable by name (``make_lens(name, hm)``, a ``lens=`` option)."""
    def deco(cls: type[Lens]) -> type[Lens]:
        if name in LENSES and LENSES[name] is not cls:
            raise ValueError(f"lens name {name!r} is already registered to {LENSES[name].__name__}")
        cls.name = name
        LENSES[name] = cls
        return cls
    return deco


def make_lens(name: str, hm: HubModel, **kwargs) -> Lens:
    """Build a registered lens for ``hm`` (``apply_norm``, chunk sizes and lens options as kwargs)."""
    if name not in LENSES:
        raise KeyError(f"unknown lens {name!r}; registered: {sorted(LENSES)}")
    return LENSES[name](hm, **kwargs)
