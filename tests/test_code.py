"""Code: the shipped functions, unparsable code reported, list commas, call arguments, lens tasks."""
import ast
import json

import pandas as pd
import pytest

from helpers import run_cfg
from hub.models.tiny import tiny_tokenizer
from modalities.base import ADAPTERS
from modalities.code import DATA, CodeAdapter, CodeItem, argument_sites, list_commas, load_functions

GOOD = [
    {"id": "area", "code": "def area(width, height):\n    return width * height", "call": "area(3, 5)",
     "en": "Area of a rectangle.", "fr": "Aire d'un rectangle.", "zh": "矩形的面积。"},
    {"id": "greet", "code": "def greet(name):\n    return 'Hi ' + name", "call": "greet(\"Maria\")",
     "en": "Greet someone.", "fr": "Salue quelqu'un.", "zh": "向某人问好。"},
    {"id": "total", "code": "def total(numbers):\n    return sum(numbers)", "call": "total([1, 2, 3])",
     "en": "Sum a list.", "fr": "Somme d'une liste.", "zh": "列表求和。"},
    {"id": "first", "code": "def first(items):\n    return items[0]", "en": "First item.", "fr": "Premier élément.",
     "zh": "第一个元素。"},
]
BROKEN = {"id": "broken", "code": "def broken(x)\n    return x", "en": "Broken.", "fr": "Cassé.", "zh": "坏了。"}


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_shipped_functions_parse_and_have_three_languages():
    items, bad, drops = load_functions(DATA / "functions.jsonl", ["en", "fr", "zh"])
    assert len(items) >= 100 and not bad and not drops
    assert len({it.id for it in items}) == len(items)
    for it in items:
        defs = [n.name for n in ast.walk(ast.parse(it.code)) if isinstance(n, ast.FunctionDef)]
        assert defs and it.call and ast.parse(it.call).body[0].value.func.id in defs, it.id
        assert all(it.descriptions[lang] for lang in ("en", "fr", "zh"))
    assert sum(len(list_commas(it.program)) for it in items) >= 100


def test_unparsable_code_is_reported_not_silently_dropped(tmp_path, caplog):
    p = write_jsonl(tmp_path / "f.jsonl", GOOD + [BROKEN])
    ad = CodeAdapter(path=p)
    sets = list(ad.pairs())
    assert [s.ids["lang"] for s in sets] == ["en", "fr", "zh"] and len(sets[0].a) == 4
    assert ad.drops["code does not parse"] == 1
    assert [b.id for b in ad.unparsable] == ["broken"] and ad.unparsable[0].line == 1
    assert "broken" in str(ad.unparsable[0]) and "does not parse" in caplog.text


def test_bad_files_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_functions(tmp_path / "nope.jsonl", ["en"])
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(GOOD[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        load_functions(p, ["en"])
    write_jsonl(p, [{"id": "x", "en": "no code"}])
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing field 'code'"):
        load_functions(p, ["en"])
    write_jsonl(p, GOOD[:1])
    with pytest.raises(ValueError, match=r"missing description field\(s\) \['de'\]"):
        load_functions(p, ["en", "de"])
    write_jsonl(p, GOOD[:2] + GOOD[:1])
    with pytest.raises(ValueError, match="duplicate id 'area'"):
        load_functions(p, ["en"])
    write_jsonl(p, GOOD[:3] + [{**GOOD[3], "fr": " "}])
    items, _, drops = load_functions(p, ["en", "fr"])
    assert drops["empty description"] == 1 and len(items) == 3


def test_list_commas_are_between_items():
    prog = "def f():\n    return [1, 2, 3]\n\nf([\"a\", \"b\"], [], [x])"
    ks = list_commas(prog)
    assert len(ks) == 3 and all(prog[k] == "," for k in ks)  # not the comma between the call's arguments
    assert [prog[k - 1] for k in ks] == ["1", "2", '"']


def test_argument_sites_match_parameters():
    it = CodeItem("area", GOOD[0]["code"], {}, GOOD[0]["call"])
    sites = argument_sites(it)
    assert [(s.param, s.text) for s in sites] == [("width", "3"), ("height", "5")]
    assert all(it.program[s.start:s.end] == s.text for s in sites)
    g = CodeItem("greet", GOOD[1]["code"], {}, GOOD[1]["call"])
    (s,) = argument_sites(g)
    assert (s.param, s.text) == ("name", "Maria") and g.program[s.start:s.end] == "Maria"
    assert argument_sites(CodeItem("t", GOOD[2]["code"], {}, GOOD[2]["call"])) == []  # a list is not read
    assert argument_sites(CodeItem("f", GOOD[3]["code"], {})) == []  # no call


def test_lens_tasks_on_tiny_tokenizer(tmp_path):
    tok = tiny_tokenizer()
    ad = CodeAdapter(lens_items=30)
    ct = ad.comma_task(tok)
    assert ct.set_names == ["and", "or", "not"] and len(ct.prompts) == 30
    assert all(p.endswith(",") for p in ct.prompts)
    at = ad.argument_task(tok)
    assert at.set_names == ["parameter", "argument"] and at.prompts
    for p, (param, arg) in zip(at.prompts, at.token_sets):
        assert param and arg and not (param & arg)
    assert at.drops[f"parameter name shorter than {ad.min_param_len} characters"] > 0
    assert ADAPTERS["code"] is CodeAdapter


@pytest.mark.slow
def test_code_experiment_with_user_file(tmp_path):
    extra = [{**GOOD[0], "id": f"area{i}", "call": f"area({i}, {i + 1})"} for i in range(4)]
    pick = "def pick(options):\n    return [options[0], options[1], options[2]]"
    extra.append({**GOOD[3], "id": "pick", "code": pick, "call": "pick([4, 5, 6])"})
    p = write_jsonl(tmp_path / "mine.jsonl", GOOD + extra + [BROKEN])
    out = tmp_path / "run"
    report = run_cfg(["experiment=code", "model=tiny_llama", f"data.code={p}", "modality.languages=[en,fr]",
                      "metric.n_boot=10"], out)
    df = pd.read_csv(out / "results.csv")
    assert set(df[df["task"] == "code-description"]["lang"]) == {"en", "fr"}
    assert set(df[df["task"] == "lens list comma"]["set"].dropna()) == {"and", "or", "not"}
    assert set(df[df["task"] == "lens call argument"]["set"].dropna()) == {"parameter", "argument"}
    text = report.read_text()
    assert "1 function(s) left out" in text and "broken (line 1" in text
