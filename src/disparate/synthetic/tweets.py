"""Small TwitterAAE files in the real format (``write_synthetic_corpus``), for tests and demos."""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from disparate.data.tweets import CLASS_NAMES, DIALECTS, escape_text

__all__ = ["WORDS", "write_synthetic_corpus"]


#: The words of each dialect and class that the written tweets are made of.
WORDS = {
    "AAE": ("finna", "lowkey", "ion", "bruh", "tryna", "yall"),
    "SAE": ("really", "going", "today", "weekend", "think", "coffee"),
    "negative": ("hate", "awful", "tired", "worst"),
    "positive": ("love", "great", "happy", "best"),
}
_LABEL_SYMBOLS = {
    "positive": ("\U0001F602", "\U0001F60D", ":)", ":D", "\u263a\ufe0f", "=)"),
    "negative": ("\U0001F62D", "\U0001F612", ":(", ":-(", "\u2639", "):"),
}


def _synth_line(tweet_id: int, text: str, p_aa: float, p_white: float, raw: bool = False
                ) -> str:
    rest = max(0.0, 1.0 - p_aa - p_white)
    body = text if raw else escape_text(text)
    return (f"{tweet_id}\tTue Jan 22 22:24:45 +0000 2013\t{1000 + tweet_id}\t"
            f"[-80.01040975, 32.80108357]\t450190027021\t{body}\t{p_aa!r}\t{rest / 2!r}\t"
            f"0.0\t{p_white!r}\n")


def write_synthetic_corpus(path: str | Path, per_class: Mapping[str, int] | int = 20, *,
                           seed: int = 0, noise: bool = True) -> dict[str, int]:
    """Write a small TwitterAAE-format file: ``per_class[dialect]`` distinct eligible tweets
    of each (dialect, class), with dialect and class words and one label symbol each
    (escaped as in the real files, a few in raw UTF-8), then, with ``noise``, lines that must
    be skipped: malformed, unlabelled, both labels, ambiguous dialect, too short, a
    duplicate. Returns the eligible count per ``"dialect/class"``."""
    counts = dict(per_class) if isinstance(per_class, Mapping) else {
        d: int(per_class) for d in DIALECTS}
    rng = np.random.default_rng(seed)
    lines, tid, eligible = [], 10**17, {}
    for dialect in DIALECTS:
        for cls in CLASS_NAMES:
            eligible[f"{dialect}/{cls}"] = counts[dialect]
            for k in range(counts[dialect]):
                words = [str(w) for w in rng.choice(WORDS[dialect], 3)]
                words += [str(rng.choice(WORDS[cls])), f"n{k}x{dialect[0]}{cls[0]}"]
                if k % 5 == 0:
                    words.insert(0, "@someone")
                if k % 7 == 0:
                    words.append("http://t.co/abc")
                symbol = _LABEL_SYMBOLS[cls][k % len(_LABEL_SYMBOLS[cls])]
                text = " ".join(words) + " " + symbol
                raw = k % 9 == 4  # raw UTF-8 instead of escapes
                if k % 11 == 3:
                    text, raw = text.replace(" ", "\t", 1), True  # a tab inside the text
                hi = float(np.round(rng.uniform(0.81, 0.99), 6))
                lo = float(np.round(rng.uniform(0.0, 1.0 - hi), 6))
                p_aa, p_white = (hi, lo) if dialect == "AAE" else (lo, hi)
                tid += 1
                lines.append(_synth_line(tid, text, p_aa, p_white, raw=raw))
    if noise:
        first = lines[0]
        extra = [
            "not a tweet line\n",
            "1\t2\t3\n",
            _synth_line(1, "finna go out today nothing here", 0.9, 0.05),
            _synth_line(2, "so happy but sad \U0001F602 \U0001F62D", 0.9, 0.05),
            _synth_line(3, "really great coffee day :) :(", 0.05, 0.9),
            _synth_line(4, "ambiguous dialect great stuff :)", 0.5, 0.5),
            _synth_line(5, "ok \U0001F602", 0.05, 0.9),
            _synth_line(6, "@bob @alice :)", 0.9, 0.05),
            _synth_line(7, "great day for it :)", 0.9, 0.05).replace("\t0.9\t", "\tabc\t"),
            first,  # an exact duplicate of the first tweet
        ]
        lines += extra
    order = rng.permutation(len(lines))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        f.writelines(lines[i] for i in order)
    return eligible
