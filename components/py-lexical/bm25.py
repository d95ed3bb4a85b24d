"""BM25 over the candidate passages: the logic of the Python `lexical` plugin.

Plain Python with no WebAssembly in it, so `python -m unittest` runs its
tests natively; `app.py` is the thin component glue. It mirrors the Rust
`lexical` component (components/lexical/src/bm25.rs) rule for rule, so that
tests/polyglot.rs can compare the two languages' scores: IDF and the average
length come from the passages of the call (the candidate set is the only
corpus a reranker sees), Lucene's 33 English stopwords are dropped (unless
the query is made of stopwords only), and Harman's S-stemmer folds plurals.
"""

import math

STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split()
)
APOSTROPHES = ("'", "\u2019")


def stem(word: str) -> str:
    """Harman's S-stemmer: folds English plurals and nothing else."""
    if len(word) <= 3:
        return word
    if word.endswith("ies") and not word[:-3].endswith(("e", "a")):
        return word[:-3] + "y"
    if word.endswith("es") and not word[:-2].endswith(("a", "e", "o")):
        return word[:-2] + "e"
    if word.endswith("s") and not word[:-1].endswith(("u", "s")):
        return word[:-1]
    return word


def words(text: str):
    """Split on every character that is neither alphanumeric nor an apostrophe."""
    word = []
    for ch in text:
        if ch.isalnum() or ch in APOSTROPHES:
            word.append(ch)
        elif word:
            yield "".join(word)
            word = []
    if word:
        yield "".join(word)


def terms(text: str, stopwords: bool, stemming: bool):
    """The terms of `text`, in order, duplicates kept."""
    out = []
    for word in words(text):
        word = word.strip("".join(APOSTROPHES))
        for suffix in ("'s", "\u2019s"):
            if word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        for a in APOSTROPHES:
            word = word.replace(a, "")
        word = word.lower()
        if not word or (stopwords and word in STOPWORDS):
            continue
        out.append(stem(word) if stemming else word)
    return out


def bm25(query, passages, k1: float, b: float):
    """BM25 of analysed `query` against each analysed passage."""
    n = len(passages)
    total = sum(len(p) for p in passages)
    if not query or total == 0:
        return [0.0] * n
    avg = total / n
    qtf = {}
    for t in query:
        qtf[t] = qtf.get(t, 0) + 1
    order = sorted(qtf)
    tf = []
    for p in passages:
        counts = dict.fromkeys(order, 0)
        for t in p:
            if t in counts:
                counts[t] += 1
        tf.append(counts)
    idf = {}
    for t in order:
        df = sum(1 for c in tf if c[t] > 0)
        idf[t] = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
    scores = []
    for p, counts in zip(passages, tf):
        norm = 1.0 - b + b * len(p) / avg
        s = 0.0
        for t in order:
            f = counts[t]
            if f > 0:
                s += qtf[t] * idf[t] * f * (k1 + 1.0) / (f + k1 * norm)
        scores.append(s)
    return scores


def rank(query: str, passages, k1=1.2, b=0.75, stopwords=True, stemming=True):
    """Analyse and score; a stopwords-only query is analysed without the filter."""
    q = terms(query, stopwords, stemming)
    if not q and stopwords:
        stopwords = False
        q = terms(query, stopwords, stemming)
    return bm25(q, [terms(p, stopwords, stemming) for p in passages], k1, b)


def number(key: str, value: str, lo: float, hi: float) -> float:
    """A finite number in [lo, hi]; ValueError naming `key` otherwise."""
    try:
        x = float(value.strip())
    except ValueError:
        raise ValueError(f"{key} = {value!r}: not a number") from None
    if not (lo <= x <= hi):  # also refuses NaN and infinities
        raise ValueError(f"{key} = {value!r}: must be in [{lo:g}, {hi:g}]")
    return x


def boolean(key: str, value: str) -> bool:
    """`true` or `false`; ValueError naming `key` otherwise."""
    v = value.strip()
    if v in ("true", "false"):
        return v == "true"
    raise ValueError(f"{key} = {value!r}: must be true or false")


KEYS = ("k1", "b", "stopwords", "stem")


def parse_settings(settings):
    """The `configure` settings as keyword arguments of `rank`."""
    config = {"k1": 1.2, "b": 0.75, "stopwords": True, "stemming": True}
    for key, value in settings:
        if key == "k1":
            config["k1"] = number(key, value, 0.0, 100.0)
        elif key == "b":
            config["b"] = number(key, value, 0.0, 1.0)
        elif key == "stopwords":
            config["stopwords"] = boolean(key, value)
        elif key == "stem":
            config["stemming"] = boolean(key, value)
        else:
            raise ValueError(f"unknown setting `{key}` (known: {', '.join(KEYS)})")
    return config
