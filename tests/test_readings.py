"""Readings that count layers follow one materiality rule (hub/readings.py), on synthetic curves."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.running_text import running_text_row
from hub.describe import latent_reading
from hub.readings import compare_curves, min_prob_of, pattern_reading
from hub.stats import mean_ci
from hub.steps.lens_sets import set_reading

L = 12  # layers 0..11


def _curves(key: str = "lang", **values) -> pd.DataFrame:
    """lang_prob rows with tight intervals (half-width 5% of the value + 1e-5)."""
    rows = []
    for name, v in values.items():
        for k, x in enumerate(v):
            h = 0.05 * x + 1e-5
            rows.append({"metric": "lang_prob", key: name, "layer": k, "value": x, "ci_low": x - h,
                         "ci_high": x + h, "n": 40})
    return pd.DataFrame(rows)


def _bump(peak: float, centre: float, width: float = 1.5) -> np.ndarray:
    k = np.arange(L)
    return peak * np.exp(-0.5 * ((k - centre) / width) ** 2)


RISE = np.r_[np.full(L - 3, 1e-4), [0.05, 0.3, 0.7]]  # the target wins only at the end


def test_english_leads_in_the_middle_is_the_pattern():
    df = _curves(en=_bump(0.3, 6) + 1e-5, zh=RISE)
    s = latent_reading(df, "zh", "en")
    assert "This is the pattern Wendler et al. report" in s
    assert "≥ 0.01" in s  # the rule is stated


def test_target_leads_throughout_is_not_the_pattern():
    # the issue's larger checkpoint: zh leads wherever either exceeds 0.01; en leads only at 1e-4 levels
    zh = np.r_[np.full(4, 1e-4), np.linspace(0.02, 0.8, L - 4)]
    en = np.r_[np.full(4, 8e-4), 0.5 * np.linspace(0.02, 0.8, L - 4) * 0.2]
    df = _curves(en=en, zh=zh)
    s = latent_reading(df, "zh", "en")
    assert "This is the pattern" not in s
    assert "does not appear" in s and "zh leads at every material layer" in s
    assert "Not counted" in s and "p(en) at 0–3" in s  # the immaterial en leads are named, not counted


def test_neither_material_says_nothing_to_read():
    df = _curves(en=_bump(0.004, 6) + 1e-5, zh=np.full(L, 2e-4))
    s = latent_reading(df, "zh", "en")
    assert "This is the pattern" not in s
    assert "Neither p(en) nor p(zh) reaches 0.01" in s and "does not appear" in s


def test_issue_case_tiny_early_leads_are_not_counted():
    # layers 2-3: both below 0.001 with en separated above zh; en leads materially at 6-10
    en = np.r_[1e-5, 1e-5, 9e-4, 8e-4, 1e-4, 0.005, 0.1, 0.2, 0.3, 0.2, 0.1, 0.05]
    zh = np.r_[1e-5, 1e-5, 1e-4, 1e-4, 2e-4, 0.004, 0.01, 0.02, 0.05, 0.08, 0.09, 0.6]
    leads = compare_curves(_curves(x=en).set_index("layer"), _curves(x=zh).set_index("layer"), 0.01)
    assert leads.a == [6, 7, 8, 9, 10] and leads.b == [11]
    assert leads.a_immaterial == [2, 3, 5]
    s = latent_reading(_curves(en=en, zh=zh), "zh", "en")
    assert "Material layers where p(en) > p(zh) with separated 95% intervals: 6–10;" in s
    assert "This is the pattern" in s


def test_latent_leads_but_target_never_wins_is_half_the_pattern():
    s = pattern_reading(compare_curves(_curves(x=_bump(0.3, 6) + 0.02).set_index("layer"),
                                       _curves(x=np.full(L, 0.02)).set_index("layer")), "en", "zh")
    assert "only half of the pattern" in s and "This is the pattern" not in s


def test_min_prob_from_config_and_bad_values():
    assert min_prob_of({}) == 0.01
    assert min_prob_of({"reading": {"min_prob": 0.05}}) == 0.05
    for bad in (0, 1.5, "x", -0.1):
        with pytest.raises(ValueError, match="reading.min_prob"):
            min_prob_of({"reading": {"min_prob": bad}})


def test_threshold_is_configurable():
    df = _curves(en=_bump(0.03, 6) + 1e-5, zh=RISE)
    assert "This is the pattern" in latent_reading(df, "zh", "en", min_prob=0.01)
    assert "This is the pattern" not in latent_reading(df, "zh", "en", min_prob=0.05)


def _running(en: np.ndarray, actual: np.ndarray, lang: str = "ar") -> pd.DataFrame:
    d = _curves(**{"en": en, lang: actual})
    return d.assign(src=lang)


def test_running_text_counts_only_material_middle_layers():
    # Arabic in the issue: p(en) > p(actual) at most middle layers, but p(en) peaks at 0.016 (layer 1)
    en = np.r_[1e-4, 0.016, np.full(L - 3, 0.004), 0.002]
    ar = np.r_[1e-5, 0.002, np.full(L - 3, 0.001), 0.3]
    row = running_text_row(_running(en, ar), "ar", {}, 0.01)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == f"1/1 (of {L - 2})"  # only layer 1 is material, and en leads there
    assert cells[3] == f"2–{L - 2}"  # the leads below 0.01 are listed apart
    # German-like: a clear English phase counts
    en = np.r_[1e-4, 1e-4, 1e-3, _bump(0.12, 7)[3:L - 1], 0.01]
    de = np.r_[1e-4, 1e-4, 1e-3, np.full(L - 4, 0.005), 0.4]
    cells = [c.strip() for c in running_text_row(_running(en, de, "de"), "de", {}, 0.01).strip("|").split("|")]
    material = int(cells[2].split("/")[1].split()[0])
    assert int(cells[2].split("/")[0]) == material >= 3


def test_arithmetic_reading_no_pattern_when_hub_set_is_immaterial():
    df = _curves(key="set", en=_bump(0.004, 6) + 1e-5, digits=RISE, fr=np.full(L, 1e-5))
    s = set_reading(df, ["en", "digits", "fr"], "en", "digits", output_set="digits")
    assert "no hub pattern" in s and "This is the hub pattern" not in s
    assert "Material layers where p(en) > p(digits) with separated 95% intervals: none" in s
    df = _curves(key="set", en=_bump(0.3, 6) + 1e-5, digits=RISE, fr=np.full(L, 1e-5))
    assert "This is the hub pattern" in set_reading(df, ["en", "digits", "fr"], "en", "digits", output_set="digits")


def test_probability_intervals_stay_in_bounds():
    v = np.zeros((20, 3))
    v[0] = [0.9, 0.5, 0.99]  # one item carries all the mass: the normal interval dips below 0
    v[1:, 2] = 0.99
    m, lo, hi = mean_ci(v)
    assert (lo < 0).any() or (hi > 1).any()  # the unclipped interval leaves [0, 1]
    m2, lo2, hi2 = mean_ci(v, bounds=(0.0, 1.0))
    assert np.array_equal(m, m2) and (lo2 >= 0).all() and (hi2 <= 1).all()
    assert np.allclose(lo2, np.clip(lo, 0, 1)) and np.allclose(hi2, np.clip(hi, 0, 1))
