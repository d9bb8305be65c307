"""Small Reddit comment dumps in the real pushshift format, for tests, demos and timing.

The files look like the monthly ``RC_YYYY-MM`` dumps: one JSON object per line with the
usual fields (``author``, ``body``, ``created_utc``, ``subreddit``, ``id``, ``link_id``,
``score``, ...), in (roughly) chronological order, plain or compressed by suffix (``.bz2``,
``.xz``, ``.zst``, ``.gz``). They include what a real dump has and the reader must drop:
``[deleted]`` authors, ``AutoModerator`` and other bots, ``[removed]`` bodies and, optionally,
a malformed line.

Authors are given by :class:`AuthorSpec`: a number of posts, a vocabulary size (the author's
words are the most frequent ``vocab`` words of a shared pseudo-word list, drawn Zipf-like) and
an emoji rate (emoji and symbol tokens become ``<unk>``; the paper's "tiny vocabulary"
participants). Everything is seeded.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

__all__ = ["AuthorSpec", "default_population", "pseudo_words", "sample_population",
           "write_dump"]

NOV_2017 = 1509494400  # 2017-11-01T00:00:00Z
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_EMOJI = ["\U0001F602", "\U0001F44D", "\u2764\ufe0f", "\U0001F525", ":)", "<3", "\U0001F914"]
_SUBREDDITS = [("AskReddit", "t5_2qh1i"), ("politics", "t5_2cneq"), ("nba", "t5_2qo4s"),
               ("gaming", "t5_2qh03"), ("worldnews", "t5_2qh13")]


@dataclass(frozen=True)
class AuthorSpec:
    """One synthetic author: name, number of posts, words used and share of emoji tokens."""

    name: str
    posts: int
    vocab: int
    emoji_rate: float = 0.0
    words_per_post: int = 12


def pseudo_words(n: int) -> list[str]:
    """``n`` distinct lower-case pseudo-words (consonant-vowel syllables), deterministic."""
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    out: list[str] = []
    k = 1
    while len(out) < n:
        for idx in np.ndindex(*([len(syllables)] * k)):
            out.append("".join(syllables[i] for i in idx))
            if len(out) == n:
                break
        k += 1
    return out


def default_population(n_authors: int = 12, *, seed: int = 0, posts: tuple[int, int] = (8, 20),
                       vocabs: Sequence[int] = (3, 30, 120), emoji_rates: Sequence[float] = (
                           0.8, 0.05, 0.0), words_per_post: int = 12,
                       name_digits: int = 4) -> list[AuthorSpec]:
    """Authors cycling through vocabulary tiers (tiny emoji posters, moderate, large),
    named ``user_<i>`` with ``i`` written in ``name_digits`` digits."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_authors):
        tier = i % len(vocabs)
        out.append(AuthorSpec(name=f"user_{i:0{name_digits}d}",
                              posts=int(rng.integers(posts[0], posts[1] + 1)),
                              vocab=int(vocabs[tier]), emoji_rate=float(emoji_rates[tier]),
                              words_per_post=words_per_post))
    return out


#: The tiers of ``disparate federated sample-dump``: (vocabulary, emoji rate).
SAMPLE_DUMP_TIERS: tuple[tuple[int, float], ...] = ((15, 0.6), (300, 0.02), (800, 0.01),
                                                     (2500, 0.0))


def sample_population(n_authors: int, *, posts: tuple[int, int], seed: int
                      ) -> list[AuthorSpec]:
    """The authors of ``disparate federated sample-dump``: :data:`SAMPLE_DUMP_TIERS`, 30
    words a post, names of five digits."""
    vocabs, emoji_rates = zip(*SAMPLE_DUMP_TIERS, strict=True)
    return default_population(n_authors, seed=seed, posts=posts, vocabs=vocabs,
                              emoji_rates=emoji_rates, words_per_post=30, name_digits=5)


def _open_write(path: Path) -> IO[str]:
    suffix = path.suffix.lower()
    if suffix == ".bz2":
        return bz2.open(path, "wt", encoding="utf-8")
    if suffix == ".xz":
        return lzma.open(path, "wt", encoding="utf-8")
    if suffix == ".gz":
        return gzip.open(path, "wt", encoding="utf-8")
    if suffix == ".zst":
        import zstandard

        raw = path.open("wb")
        writer = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=True)
        return io.TextIOWrapper(writer, encoding="utf-8")
    return path.open("w", encoding="utf-8")


def _comment(author: str, body: str, utc: int, k: int, rng: np.random.Generator) -> dict:
    sub, sub_id = _SUBREDDITS[int(rng.integers(len(_SUBREDDITS)))]
    cid = np.base_repr(1_000_000 + k, 36).lower()
    return {
        "author": author, "author_flair_css_class": None, "author_flair_text": None,
        "body": body, "can_gild": True, "controversiality": 0, "created_utc": utc,
        "distinguished": None, "edited": False, "gilded": 0, "id": cid,
        "is_submitter": False, "link_id": f"t3_{cid[:5]}", "parent_id": f"t3_{cid[:5]}",
        "permalink": f"/r/{sub}/comments/{cid[:5]}/_/{cid}/", "retrieved_on": utc + 86400,
        "score": int(rng.integers(-3, 50)), "stickied": False, "subreddit": sub,
        "subreddit_id": sub_id, "subreddit_type": "public",
    }


def write_dump(path: str | Path, authors: Sequence[AuthorSpec], *, seed: int = 0,
               noise: bool = True, malformed: bool = False, start_utc: int = NOV_2017,
               span_s: int = 30 * 86400) -> Path:
    """Write a dump of ``authors``' posts (plus deleted/bot/removed noise) to ``path``.

    Posts are ordered by ``created_utc`` like a real dump, except that a few neighbours are
    swapped (real dumps are not strictly sorted). Returns ``path``.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    top = max(a.vocab for a in authors) if authors else 1
    words = pseudo_words(top)
    rows: list[tuple[int, str, str]] = []
    for a in authors:
        ranks = np.arange(1, a.vocab + 1, dtype=np.float64)
        p = (1.0 / ranks) / (1.0 / ranks).sum()
        for _ in range(a.posts):
            n = max(1, int(rng.poisson(a.words_per_post)))
            toks = []
            for w in rng.choice(a.vocab, size=n, p=p):
                if rng.random() < a.emoji_rate:
                    toks.append(_EMOJI[int(rng.integers(len(_EMOJI)))])
                else:
                    toks.append(words[int(w)])
            if toks and rng.random() < 0.3:
                toks[-1] += rng.choice([".", "!", "?", ","])
            if rng.random() < 0.2:
                toks[0] = toks[0].capitalize()
            rows.append((int(rng.integers(start_utc, start_utc + span_s)), a.name,
                         " ".join(toks)))
    if noise:
        for _ in range(max(3, len(rows) // 20)):
            t = int(rng.integers(start_utc, start_utc + span_s))
            kind = int(rng.integers(4))
            if kind == 0:
                rows.append((t, "[deleted]", "[deleted]"))
            elif kind == 1:
                rows.append((t, "AutoModerator", "Your post was removed. " * 3))
            elif kind == 2:
                rows.append((t, "RemindMeBot", "I will be messaging you in 2 days"))
            else:
                name = authors[int(rng.integers(len(authors)))].name if authors else "x"
                rows.append((t, name, "[removed]"))
    rows.sort(key=lambda r: r[0])
    for i in range(0, len(rows) - 1, 7):  # real dumps are only roughly sorted
        rows[i], rows[i + 1] = rows[i + 1], rows[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open_write(path) as f:
        for k, (t, author, body) in enumerate(rows):
            f.write(json.dumps(_comment(author, body, t, k, rng)) + "\n")
            if malformed and k == len(rows) // 2:
                f.write('{"author": "broken", "body": \n')
    return path


def tiny_config(data_dir: str | Path, *, name: str = "tiny-fl", rounds: int = 3,
                participants_per_round: int = 4, seed: int = 3,
                extra: dict | None = None) -> dict:
    """A federated experiment (as a config dict) small enough for tests: a dump written by
    :func:`write_dump` of :func:`default_population` authors in ``data_dir``, an 8-unit LSTM,
    a 60-word vocabulary. ``extra`` updates sections, e.g. ``{"privacy": {...}}``."""
    config = {
        "name": name,
        "description": "tiny synthetic federated experiment (tests)",
        "data": {"dataset": "reddit", "data_dir": str(data_dir), "seed": 0,
                 "options": {"files": ["RC_*"], "min_posts": 5, "max_posts": 30,
                             "vocab_size": 60, "seq_len": 16, "test_fraction": 0.25}},
        "model": {"name": "word-lstm", "options": {"embedding_dim": 8, "hidden_size": 8,
                                                   "num_layers": 2, "dropout": 0.2}},
        "privacy": {"clipping": True, "noise": True, "max_grad_norm": 0.5,
                    "noise_multiplier": 2.0, "delta": 1e-5, "sampling": "poisson"},
        "training": {"optimizer": "sgd", "lr": 1.0, "batch_size": 4, "epochs": 2,
                     "seed": seed, "eval_batch_size": 16},
        "evaluation": {"highlight": ["0-99"], "min_group_test_size": 1},
        "federated": {"rounds": rounds, "participants_per_round": participants_per_round,
                      "eval_every": 1, "checkpoint_every": 1, "local_grad_clip": 0.25,
                      "vocab_buckets": [0, 10, 40]},
    }
    for section, values in (extra or {}).items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return config
