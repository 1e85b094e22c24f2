"""English inflections of a lemma: is ``carried`` a form of ``carry``?

WiC's targets are lemmas and its sentences inflect them (carry/carried, study/studies,
stop/stopped, run/ran, child/children). :func:`inflections` lists a lemma's ordinary forms
by the regular spelling rules (plural and 3rd person -s/-es/-ies/-ves, past -ed/-d/-ied with
consonant doubling, -ing with e-dropping and ie -> y, comparatives -er/-est) plus a table of
irregular verbs, nouns and adjectives; :func:`is_inflection` checks a word against them, in
both directions (a sentence may use the lemma where the target is an inflected form).
No lemmatiser or dictionary is needed, so it works offline and is deterministic; the rules
over-generate a little (``bus`` -> ``busses``), which only makes the check more lenient.
"""
from __future__ import annotations

import functools

VOWELS = frozenset("aeiou")

# base past past-participle (variants with "/"); the common English irregular verbs
_IRREGULAR_VERBS = """
arise arose arisen|awake awoke awoken|be was/were been/is/am/are|bear bore borne/born|beat beat beaten|
become became become|begin began begun|bend bent bent|bet bet bet|bid bid bid|bind bound bound|bite bit bitten|
bleed bled bled|blow blew blown|break broke broken|breed bred bred|bring brought brought|build built built|
burn burnt/burned burnt/burned|burst burst burst|buy bought bought|cast cast cast|catch caught caught|
choose chose chosen|cling clung clung|come came come|cost cost cost|creep crept crept|cut cut cut|
deal dealt dealt|dig dug dug|do did done/does|draw drew drawn|dream dreamt/dreamed dreamt/dreamed|
drink drank drunk|drive drove driven|dwell dwelt dwelt|eat ate eaten|fall fell fallen|feed fed fed|
feel felt felt|fight fought fought|find found found|flee fled fled|fling flung flung|fly flew flown|
forbid forbade forbidden|forget forgot forgotten|forgive forgave forgiven|freeze froze frozen|get got gotten|
give gave given|go went gone/goes|grind ground ground|grow grew grown|hang hung/hanged hung/hanged|
have had had/has|hear heard heard|hide hid hidden|hit hit hit|hold held held|hurt hurt hurt|keep kept kept|
kneel knelt knelt|know knew known|lay laid laid|lead led led|lean leant/leaned leant/leaned|leap leapt leapt|
learn learnt/learned learnt/learned|leave left left|lend lent lent|let let let|lie lay/lied lain/lied|
light lit lit|lose lost lost|make made made|mean meant meant|meet met met|mistake mistook mistaken|
overcome overcame overcome|pay paid paid|prove proved proven|put put put|quit quit quit|read read read|
rid rid rid|ride rode ridden|ring rang rung|rise rose risen|run ran run|saw sawed sawn|say said said|
see saw seen|seek sought sought|sell sold sold|send sent sent|set set set|sew sewed sewn|shake shook shaken|
shed shed shed|shine shone shone|shoot shot shot|show showed shown|shrink shrank shrunk|shut shut shut|
sing sang sung|sink sank sunk|sit sat sat|sleep slept slept|slide slid slid|sling slung slung|slit slit slit|
smell smelt/smelled smelt/smelled|speak spoke spoken|speed sped sped|spell spelt/spelled spelt/spelled|
spend spent spent|spill spilt/spilled spilt/spilled|spin spun spun|spit spat spat|split split split|
spoil spoilt/spoiled spoilt/spoiled|spread spread spread|spring sprang sprung|stand stood stood|
steal stole stolen|stick stuck stuck|sting stung stung|stink stank stunk|stride strode stridden|
strike struck struck/stricken|string strung strung|strive strove striven|swear swore sworn|
sweep swept swept|swell swelled swollen|swim swam swum|swing swung swung|take took taken|teach taught taught|
tear tore torn|tell told told|think thought thought|throw threw thrown|thrust thrust thrust|tread trod trodden|
understand understood understood|undertake undertook undertaken|upset upset upset|wake woke woken|
wear wore worn|weave wove woven|weep wept wept|win won won|wind wound wound|withdraw withdrew withdrawn|
wring wrung wrung|write wrote written
"""
# singular plural; irregular noun plurals the rules do not make
_IRREGULAR_NOUNS = """
man men|woman women|child children|foot feet|tooth teeth|goose geese|mouse mice|louse lice|person people|
ox oxen|die dice|criterion criteria|phenomenon phenomena|datum data|medium media|bacterium bacteria|
cactus cacti|fungus fungi|nucleus nuclei|stimulus stimuli|syllabus syllabi|radius radii|index indices|
appendix appendices|matrix matrices|vertex vertices|analysis analyses|basis bases|crisis crises|
thesis theses|hypothesis hypotheses|diagnosis diagnoses|axis axes|sheep sheep|fish fish|deer deer|
species species|series series|aircraft aircraft|penny pence|brother brethren|passerby passersby
"""
# positive comparative superlative
_IRREGULAR_ADJECTIVES = """
good better best|well better best|bad worse worst|ill worse worst|far farther/further farthest/furthest|
little less least|much more most|many more most|old older/elder oldest/eldest
"""


def _table(text: str) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for entry in text.replace("\n", "").split("|"):
        words = entry.split()
        if words:
            out.setdefault(words[0], set()).update(f for w in words[1:] for f in w.split("/"))
    return {k: frozenset(v) for k, v in out.items()}


IRREGULAR = {k: v for t in (_IRREGULAR_VERBS, _IRREGULAR_NOUNS, _IRREGULAR_ADJECTIVES)
             for k, v in _table(t).items()}


def _cvc(w: str) -> bool:
    """Ends consonant-vowel-consonant (not w/x/y): the final consonant doubles (stop -> stopped)."""
    return (len(w) >= 3 and w[-1] not in VOWELS and w[-1] not in "wxy" and w[-2] in VOWELS
            and w[-3] not in VOWELS)


def _s_form(w: str) -> set[str]:
    """Plural / 3rd person singular."""
    if w.endswith(("s", "x", "z", "ch", "sh", "o")):
        return {w + "es", w + "s"}
    if w.endswith("y") and len(w) > 1 and w[-2] not in VOWELS:
        return {w[:-1] + "ies"}
    forms = {w + "s"}
    if w.endswith("fe"):
        forms.add(w[:-2] + "ves")
    elif w.endswith("f"):
        forms.add(w[:-1] + "ves")
    return forms


def _suffixed(w: str, suffix: str) -> set[str]:
    """``w`` + a vowel-initial suffix (-ed, -ing, -er, -est) by the spelling rules."""
    if w.endswith("e"):
        if suffix == "ing":
            if w.endswith("ie"):
                return {w[:-2] + "ying"}  # die -> dying
            return {w[:-1] + "ing", w + "ing"}  # make -> making; see -> seeing
        return {w[:-1] + suffix}  # bake -> baked, free -> freed, large -> larger
    if w.endswith("y") and len(w) > 1 and w[-2] not in VOWELS and suffix != "ing":
        return {w[:-1] + "i" + suffix}  # carry -> carried, happy -> happier
    forms = {w + suffix}
    if _cvc(w):
        forms.add(w + w[-1] + suffix)  # stop -> stopped, travel -> travelled, big -> bigger
    if w.endswith("c"):
        forms.add(w + "k" + suffix)  # panic -> panicked
    return forms


@functools.lru_cache(maxsize=65536)
def inflections(lemma: str) -> frozenset[str]:
    """The lemma and its regular and irregular English inflected forms (lower case)."""
    w = lemma.lower().strip()
    forms = {w} | _s_form(w)
    for suffix in ("ed", "ing", "er", "est"):
        forms |= _suffixed(w, suffix)
    forms |= IRREGULAR.get(w, frozenset())
    forms |= {f + "'s" for f in list(forms)} | {f + "'" for f in forms if f.endswith("s")}  # possessives
    return frozenset(forms)


def is_inflection(target: str, word: str) -> bool:
    """Is ``word`` an ordinary inflection of ``target`` (or ``target`` one of ``word``)?
    Case-insensitive; curly apostrophes count as straight ones."""
    t = target.lower().strip().replace("\u2019", "'")
    w = word.lower().strip().replace("\u2019", "'")
    if not t or not w:
        return False
    return w in inflections(t) or t in inflections(w)
