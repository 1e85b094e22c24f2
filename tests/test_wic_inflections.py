"""WiC's targets are lemmas and its sentences inflect them: the target check accepts ordinary
English inflections (regular and irregular) and still flags a misaligned index."""
from collections import Counter

import pytest

from modalities.inflections import inflections, is_inflection
from modalities.wic import load_wic, locate, looks_like

# (target, POS, i-j, sentence 1, sentence 2, gold) in the standard WiC release's format
INFLECTED = [
    ("carry", "V", "2-1", "You must carry your camping gear .", "Sound carries well over water .", "T"),
    ("carry", "V", "1-3", "She carried the baby home .", "The wind was carrying the smoke .", "T"),
    ("run", "V", "1-3", "They ran the experiment twice .", "The river is running dry .", "F"),
    ("study", "N", "1-2", "Her studies took years .", "A careful study of birds .", "T"),
    ("stop", "V", "2-0", "The bus stopped here .", "Stopping is hard .", "F"),
    ("child", "N", "1-1", "The children slept .", "A child laughed .", "T"),
    ("go", "V", "1-2", "He went home .", "She has gone away .", "T"),
    ("lie", "V", "2-1", "He was lying on the bed .", "She lay down .", "T"),
    ("leaf", "N", "1-1", "The leaves fell .", "One leaf stayed .", "T"),
    ("try", "V", "1-1", "She tried again .", "He tries hard .", "T"),
    ("die", "V", "3-1", "The plant is dying .", "It died .", "T"),
    ("make", "V", "1-1", "He makes bread .", "She made tea .", "F"),
    ("bank", "N", "3-3", "She robbed the bank's vault .", "They walked the banks ' edge .", "F"),
    ("big", "A", "3-1", "This one is bigger .", "The biggest house .", "T"),
    ("panic", "V", "1-1", "He panicked .", "She panics .", "T"),
    ("bring", "V", "1-2", "She brought food .", "He has brought wine .", "T"),
    ("good", "A", "2-1", "This is better .", "The best choice .", "T"),
    ("knife", "N", "1-1", "The knives were sharp .", "A knife cut .", "T"),
]
MISALIGNED = [  # the index points at a neighbouring word
    ("carry", "V", "3-1", "You must carry your camping gear .", "Sound carries well over water .", "T"),
    ("run", "V", "0-3", "They ran the experiment twice .", "The river is running dry .", "F"),
    ("bank", "N", "2-3", "She robbed the bank .", "We sat on the bank .", "F"),
    ("car", "N", "1-1", "They carry the car .", "The car stopped .", "T"),  # 'carry' is not a form of 'car'
    ("stop", "V", "1-0", "The step was steep .", "Stopping is hard .", "F"),  # 'step' is not 'stop'
    ("study", "N", "1-1", "Every student came .", "A study of birds .", "T"),  # derivation, not inflection
]


def _write(root, rows):
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        (root / f"{split}.data.txt").write_text("".join("\t".join(r[:5]) + "\n" for r in rows))
        (root / f"{split}.gold.txt").write_text("".join(r[5] + "\n" for r in rows))


def test_inflected_targets_get_no_note_and_misalignments_do(tmp_path):
    _write(tmp_path / "wic", INFLECTED)
    ws = load_wic(tmp_path / "wic", "wic")
    assert dict(ws.notes) == {} and dict(ws.drops) == {}
    assert sum(len(v) for v in ws.splits.values()) == 3 * len(INFLECTED)
    _write(tmp_path / "bad", MISALIGNED)
    bad = load_wic(tmp_path / "bad", "wic")
    assert bad.notes == Counter({"indexed word does not look like the target (kept)": 3 * len(MISALIGNED)})
    strict = load_wic(tmp_path / "bad", "wic", check_target="drop")
    assert all(len(v) == 0 for v in strict.splits.values())


@pytest.mark.parametrize("target, word", [("carry", "carried"), ("run", "ran"), ("run", "running"),
                                          ("study", "studies"), ("stop", "stopped"), ("see", "seeing"),
                                          ("be", "was"), ("mouse", "mice"), ("box", "boxes"),
                                          ("travel", "travelled"), ("carry", "Carried"), ("carried", "carry")])
def test_inflection_pairs(target, word):
    assert is_inflection(target, word) and looks_like(target, word + ",")


@pytest.mark.parametrize("target, word", [("car", "carry"), ("bank", "banner"), ("stop", "step"), ("run", "rain"),
                                          ("play", "plate"), ("go", "good"), ("study", "student")])
def test_non_inflections_are_flagged_in_english(target, word):
    assert not is_inflection(target, word) and not looks_like(target, word)


def test_other_languages_keep_the_stem_match():
    assert looks_like("Flügel", "Flügeln", "de") and not looks_like("Flügel", "Flügeln", "en")
    assert locate("Die Flügeln brachen .", "Flügel", 1, "de") == ((4, 11), True)


def test_forms_of_a_lemma():
    assert {"carry", "carries", "carried", "carrying", "carrier"} <= inflections("carry")
    assert "carryed" not in inflections("carry") and "stopped" in inflections("stop")
