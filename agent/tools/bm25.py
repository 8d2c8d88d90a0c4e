"""Passages and BM25 scores: which parts of long evidence matter for a question.

When the pages do not fit the context window, KnowledgeModel keeps the passages that share the
most (rare) words with the question instead of cutting the text at an arbitrary point. Okapi BM25
(k1 = 1.5, b = 0.75) with the non-negative IDF variant is plenty for that.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"\w+", re.UNICODE)
# Frequent English words that match everything; dropping them keeps scores about content words.
_STOPWORDS = frozenset(
    """a about above after again all am an and any are as at be because been
before being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers him his how i if in into is it its itself just me
more most my no nor not now of off on once only or other our out over own same she should so some
such than that the their them then there these they this those through to too under until up
very was we were what when where which while who whom why will with would you your given text
above""".split()
)


def tokenize(text: str) -> list[str]:
    """Lower-cased content words of ``text``."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def split_passages(text: str, max_chars: int = 800) -> list[str]:
    """``text`` as passages of at most ``max_chars``: paragraphs, merged when short, split when
    long.

    Joining the passages of a text with "\\n" gives back its words in order (no text is lost).
    """
    pieces: list[str] = []
    for raw in re.split(r"\n\s*\n|\n", text):
        para = raw.strip()
        if not para:
            continue
        while len(para) > max_chars:
            cut = max(para.rfind(". ", 0, max_chars), para.rfind(" ", 0, max_chars))
            cut = cut + 1 if cut > max_chars // 3 else max_chars
            pieces.append(para[:cut].strip())
            para = para[cut:].strip()
        if para:
            pieces.append(para)
    passages: list[str] = []
    for piece in pieces:
        if passages and len(passages[-1]) + 1 + len(piece) <= max_chars:
            passages[-1] = f"{passages[-1]}\n{piece}"
        else:
            passages.append(piece)
    return passages


class BM25:
    """Scores for a fixed collection of passages against any query."""

    def __init__(self, passages: Sequence[str], *, k1: float = 1.5, b: float = 0.75):
        self.k1 = k1
        self.b = b
        self.docs = [Counter(tokenize(p)) for p in passages]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg_length = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        df: Counter[str] = Counter()
        for d in self.docs:
            df.update(d.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> list[float]:
        terms = set(tokenize(query))
        out = []
        for d, length in zip(self.docs, self.lengths, strict=False):
            norm = (
                self.k1 * (1 - self.b + self.b * length / self.avg_length)
                if self.avg_length
                else self.k1
            )
            s = 0.0
            for t in terms:
                tf = d.get(t, 0)
                if tf:
                    s += self.idf[t] * tf * (self.k1 + 1) / (tf + norm)
            out.append(s)
        return out
