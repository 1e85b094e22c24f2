"""The CKA sums are read block by block from the upper triangle of the Grams; they must equal
the dense sums for any number of blocks, a partial last block included."""
import pytest
import torch

from hub.metrics import hsic
from hub.metrics.resampling import boot_weights
from hub.metrics.shared import sym_gram


def _dense(K, Lg, Wt):
    """The plain formulas on full [c, n, n] matrices (the implementation before blocking)."""
    w = Wt.unsqueeze(0)
    quad = lambda M: ((M @ Wt) * w).sum(1)  # noqa: E731  w' M w per column
    return {"KW": K @ Wt, "LW": Lg @ Wt, "S_kl": quad(K * Lg), "S_kk": quad(K * K), "S_ll": quad(Lg * Lg)}


@pytest.mark.parametrize("rows", [64, 128, 1000])
def test_blocked_hsic_sums_equal_dense_ones(monkeypatch, rows):
    monkeypatch.setattr(hsic, "ROWS", rows)
    g = torch.Generator().manual_seed(rows)
    x, y = torch.randn(3, 300, 24, generator=g, dtype=torch.float64), torch.randn(3, 300, 16, generator=g, dtype=torch.float64)
    x, y = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    K, Lg = sym_gram(x), sym_gram(y)
    Wt = torch.cat([torch.ones(300, 1, dtype=torch.float64), boot_weights(300, 7, 0, x.device).T.double()], 1)
    got, ref = hsic._hsic_terms(K, Lg, Wt), _dense(K, Lg, Wt)
    for key, want in ref.items():
        torch.testing.assert_close(got[key], want, rtol=1e-10, atol=1e-8, msg=key)


def test_blocked_cka_matches_explicit_resamples_over_several_blocks(monkeypatch):
    """Biased CKA of each bootstrap column == CKA of the explicitly resampled items (n = 300,
    blocks of 64: five blocks, the last one partial)."""
    monkeypatch.setattr(hsic, "ROWS", 64)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 300, 12, generator=g)
    y = x + torch.randn(2, 300, 12, generator=g)
    w = boot_weights(300, 3, seed=2, device=x.device)
    Wt = torch.cat([torch.ones(300, 1), w.T], 1)
    cen = lambda t: t - t.mean(1, keepdim=True)  # noqa: E731
    out = hsic.cka_chunk(sym_gram(cen(x)), sym_gram(cen(y)), Wt, None, {"cka"})["cka"][0]
    for b in range(3):
        idx = torch.repeat_interleave(torch.arange(300), w[b].long())
        xb, yb = cen(x[:, idx]), cen(y[:, idx])
        K, L = xb @ xb.transpose(1, 2), yb @ yb.transpose(1, 2)
        ref = (K * L).sum((1, 2)) / ((K * K).sum((1, 2)) * (L * L).sum((1, 2))).sqrt()
        torch.testing.assert_close(out[:, b + 1], ref, atol=2e-5, rtol=0)
