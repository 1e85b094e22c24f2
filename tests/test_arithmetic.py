"""Arithmetic: number words by rule (edge cases per language), expressions, pairs, lens prompts."""
import pandas as pd
import pytest

from helpers import run_cfg
from hub.lens.tokensets import token_set
from hub.models.tiny import tiny_tokenizer
from modalities.arithmetic import (ArithmeticAdapter, Expression, exclusive_sets, first_tokens, generate_expressions,
                                   parse_expression, read_expressions)
from modalities.base import ADAPTERS
from modalities.numbers import LANGUAGES, number_word, operator_word, spell_expression

EDGE_CASES = {
    "en": {0: "zero", 11: "eleven", 13: "thirteen", 15: "fifteen", 18: "eighteen", 20: "twenty", 21: "twenty-one",
           40: "forty", 99: "ninety-nine", 100: "one hundred"},
    "de": {0: "null", 1: "eins", 11: "elf", 12: "zwölf", 16: "sechzehn", 17: "siebzehn", 21: "einundzwanzig",
           30: "dreißig", 66: "sechsundsechzig", 77: "siebenundsiebzig", 100: "hundert"},
    "fr": {0: "zéro", 16: "seize", 17: "dix-sept", 21: "vingt-et-un", 22: "vingt-deux", 61: "soixante-et-un",
           70: "soixante-dix", 71: "soixante-et-onze", 79: "soixante-dix-neuf", 80: "quatre-vingts",
           81: "quatre-vingt-un", 90: "quatre-vingt-dix", 91: "quatre-vingt-onze", 97: "quatre-vingt-dix-sept",
           100: "cent"},
    "es": {0: "cero", 15: "quince", 16: "dieciséis", 20: "veinte", 21: "veintiuno", 22: "veintidós",
           23: "veintitrés", 30: "treinta", 31: "treinta y uno", 100: "cien"},
    "zh": {0: "零", 3: "三", 10: "十", 11: "十一", 19: "十九", 20: "二十", 21: "二十一", 99: "九十九",
           100: "一百"},
    "ja": {0: "零", 10: "十", 11: "十一", 20: "二十", 21: "二十一", 100: "百"},
}


@pytest.mark.parametrize("lang", sorted(EDGE_CASES))
def test_number_word_edge_cases(lang):
    for n, word in EDGE_CASES[lang].items():
        assert number_word(n, lang) == word, (lang, n)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_number_words_are_distinct_and_nonempty(lang):
    words = [number_word(n, lang) for n in range(101)]
    assert all(w.strip() for w in words) and len(set(words)) == 101


def test_number_word_rules_by_construction():
    # tens + unit compose; German puts the unit first; Chinese 十 has no leading 一 below 20
    for t in range(2, 10):
        for u in range(1, 10):
            n = 10 * t + u
            assert number_word(n, "en") == f"{number_word(10 * t, 'en')}-{number_word(u, 'en')}"
            assert number_word(n, "de").endswith("und" + number_word(10 * t, "de"))
            assert number_word(n, "zh") == number_word(t, "zh") + "十" + number_word(u, "zh")
    assert all(not number_word(n, "zh").startswith("一十") for n in range(10, 20))


def test_number_word_errors():
    with pytest.raises(ValueError, match="outside 0..100"):
        number_word(101, "en")
    with pytest.raises(ValueError, match="outside 0..100"):
        number_word(-1, "de")
    with pytest.raises(ValueError, match="unsupported language 'xx'"):
        number_word(3, "xx")
    with pytest.raises(ValueError, match="operator '%'"):
        operator_word("%", "en")


def test_spelled_expressions():
    assert spell_expression(5, "+", 3, "en") == "five plus three"
    assert spell_expression(4, "*", 6, "en") == "four times six"
    assert spell_expression(21, "-", 1, "de") == "einundzwanzig minus eins"
    assert spell_expression(71, "+", 9, "fr") == "soixante-et-onze plus neuf"
    assert spell_expression(5, "+", 3, "zh") == "五加三"
    assert spell_expression(4, "*", 6, "ja") == "四掛ける六"


def test_parse_expression_valid_and_malformed():
    assert parse_expression("5+3") == Expression(5, "+", 3)
    assert parse_expression(" 4 * 6 ") == Expression(4, "*", 6)
    assert parse_expression("8÷2") == Expression(8, "/", 2) and parse_expression("8÷2").value == 4
    for bad in ("5+", "five+3", "5+3+2", "5 plus 3", "", "5^2"):
        with pytest.raises(ValueError, match="malformed expression"):
            parse_expression(bad)
    with pytest.raises(ValueError, match="operand 200 is outside"):
        parse_expression("200+1")
    with pytest.raises(ValueError, match="result -2 is outside"):
        parse_expression("3-5")
    with pytest.raises(ValueError, match="not an exact division"):
        parse_expression("7/2")
    with pytest.raises(ValueError, match="result 120 is outside"):
        parse_expression("60*2")


def test_expression_file_counts_malformed_lines(tmp_path, caplog):
    p = tmp_path / "expr.txt"
    p.write_text("# comment\n5+3\n4*6\nfive plus three\n\n10-2\n7/2\n9+1\n")
    drops = __import__("collections").Counter()
    exprs = read_expressions(p, drops)
    assert [e.symbols() for e in exprs] == ["5+3", "4*6", "10-2", "9+1"]
    assert drops["malformed expression"] == 2
    assert "expr.txt:4" in caplog.text and "expr.txt:7" in caplog.text
    ad = ArithmeticAdapter(expressions=p, languages=["en"])
    (ps,) = list(ad.pairs())
    assert ps.a.inputs == ["5+3", "4*6", "10-2", "9+1"] and ps.b.inputs[0] == "five plus three"
    assert ad.drops["malformed expression"] == 2
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_expressions(tmp_path / "nope.txt", drops)


def test_generated_expressions_are_seeded_distinct_and_in_range():
    a = generate_expressions(50, seed=3)
    assert a == generate_expressions(50, seed=3) and a != generate_expressions(50, seed=4)
    assert len(set(a)) == 50 and all(0 <= e.value <= 100 and e.a <= 20 and e.b <= 20 for e in a)
    with pytest.raises(ValueError, match="unknown operator"):
        generate_expressions(5, ops=["+", "%"])
    with pytest.raises(ValueError, match="only"):
        generate_expressions(10_000, ops=["+"], max_operand=5)


def test_pairs_one_set_per_language_aligned():
    assert ADAPTERS["arithmetic"] is ArithmeticAdapter
    ad = ArithmeticAdapter(n_items=10)
    sets = list(ad.pairs())
    assert [s.ids["lang"] for s in sets] == list(LANGUAGES)
    en, zh = sets[0], sets[4]
    for sym, words, zw in zip(en.a.inputs, en.b.inputs, zh.b.inputs):
        e = parse_expression(sym)
        assert words == e.words("en") and zw == e.words("zh") and " " not in zw
    with pytest.raises(ValueError, match="number words exist"):
        ArithmeticAdapter(languages=["en", "ko"])


def test_first_tokens_and_exclusive_sets():
    tok = tiny_tokenizer()
    for w in ("three", "and", "3", "三"):
        ft = first_tokens(tok, w)
        assert ft and ft <= token_set(tok, w)
    sets, why = exclusive_sets(tok, {"a": "three", "b": "three"})
    assert sets is None and "coincides" in why
    sets, why = exclusive_sets(tok, {"digits": "3", "zh": "三"})
    assert why is None and not (sets["digits"] & sets["zh"])
    with pytest.raises(ValueError, match="token_sets='all'"):
        exclusive_sets(tok, {"a": "x"}, kind="all")


def test_lens_prompts_answer_and_sets():
    tok = tiny_tokenizer()
    ad = ArithmeticAdapter(lens_items=40, n_shots=2, seed=1)
    lt = ad.lens_task(tok)
    assert lt.set_names == ["digits", "en", "de", "fr", "es", "zh"]
    assert len(lt.prompts) + sum(lt.drops.values()) == 40
    for prompt, sets, item in zip(lt.prompts, lt.token_sets, lt.items):
        lines = prompt.split("\n")
        assert len(lines) == 3
        e = parse_expression(item)
        assert lines[-1] == f"{e.value}={e.a}{e.op}" and 1 <= e.b <= 9
        for shot in lines[:-1]:  # solved examples are correct and never share the answer
            lhs, rhs = shot.split("=")
            assert parse_expression(rhs).value == int(lhs) and parse_expression(rhs).b != e.b
        ids = [t for s in sets for t in s]
        assert len(ids) == len(set(ids)) and all(sets)
    assert all(not (e.op in "*/" and (e.a == 0 or e.b == 0)) for e in ad.lens_pool())


@pytest.mark.slow
def test_arithmetic_experiment_smoke(tmp_path):
    report = run_cfg(["experiment=arithmetic", "model=tiny_llama", "modality.n_items=12",
                      "modality.languages=[en,zh]", "modality.lens_languages=[en,zh]", "modality.lens_items=30",
                      "metric.n_boot=10"], tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    sim = df[df["task"] == "expression-words"]
    assert set(sim["lang"]) == {"en", "zh"} and set(sim["metric"]) >= {"cos_adjusted", "retrieval_top1"}
    lens = df[(df["task"] == "lens c=a op") & (df["metric"] == "lang_prob")]
    assert set(lens["set"]) == {"digits", "en", "zh"}
    assert lens["value"].between(0, 1).all() and sorted(lens["layer"].unique()) == [0, 1, 2, 3]
    text = report.read_text()
    assert "Arithmetic: logit lens" in text and "Material layers where p(en) > p(digits)" in text
    assert "Materiality rule" in text
    assert (tmp_path / "lens_arithmetic.png").is_file()
