"""Tweets in African-American English (AAE) and Standard American English (SAE), with
emoji-based sentiment labels (paper Section 4.2, Figure 2a). See ``docs/tweets.md``.

Corpus: TwitterAAE (Blodgett, Green and O'Connor, EMNLP 2016), the files ``twitteraae_all``
(every tweet) and ``twitteraae_all_aa`` (the AA-heavy subset) of ``TwitterAAE-full-v1.zip``,
unzipped into ``<data_dir>/twitteraae/``. Each line has ten or more tab-separated fields::

    tweet id, timestamp, user id, [lon, lat], census block group, text..., p_AA, p_Hispanic,
    p_Other, p_White

The text is every field between the fifth and the last four (a text holding a tab is
rejoined). Non-ASCII characters are stored as ``\\uXXXX`` escapes (emoji as UTF-16
surrogate pairs, ``\\ud83d\\ude02``); :func:`decode_escapes` turns them, and ``\\n``,
``\\t``, ``\\r`` (into spaces), ``\\\\``, ``\\"``, ``\\'``, ``\\/``, back into text, and HTML
entities (``&amp;``, ``&lt;``) are unescaped. Raw UTF-8 works too.

Dialect groups: ``AAE`` if ``p_AA > aae_threshold``, ``SAE`` if ``p_White >
sae_threshold`` (0.8 each, as Elazar and Goldberg 2018); other tweets are not used.

Sentiment (:func:`sentiment_label`, after Elazar and Goldberg 2018): a tweet is *positive* if
it contains one of :data:`POSITIVE_EMOJI` or a positive emoticon (``:)``, ``:-)``, ``: )``,
``:D``, ``=)``, ``(:``, ``(-:``, ``(=``, each with its mouth repeated, ``:)))``), *negative*
with :data:`NEGATIVE_EMOJI` or a negative emoticon (``:(``, ``:-(``, ``: (``, ``=(``,
``):``, ``)-:``, ``) :``, ``)=``); an emoticon must not touch a letter, digit or ``_``
(``note:Dave`` holds no ``:D``). Tweets with both or neither are dropped. The label-bearing
symbols are removed from the text; every other emoji stays a token. Then tweets with fewer
than ``min_tokens`` tokens, or only ``<user>`` / ``<url>`` tokens, are dropped, and of tweets
with the same token sequence only the first in file order is kept (so a tweet cannot be in
both training and test data).

Tokens (:func:`tokenize`): lowercase; URLs -> ``<url>``, ``@mentions`` -> ``<user>``;
hashtags, words with inner apostrophes (``don't``), numbers, emoticons (``;)``, ``:p``,
``<3``), each emoji (with its skin tone) and runs of one punctuation mark (``!!!``) are
tokens; variation selectors and zero-width joiners are dropped.

Sample (``train_sizes`` / ``test_sizes``, per dialect): each dialect's examples are split
equally between negative and positive (an odd count gives the extra one to positive), drawn
at random (``seed``) from all eligible tweets of the dialect and class; the test examples are
further tweets of the same draw. The paper: 60,000 SAE and 1,000 AAE training tweets.

The paper's simplification (``emoji_probability``, 0.9 in the paper, 0 = off): each tweet,
training and test, gets with this probability a special token of its (dialect, class)
appended, :data:`CUE_TOKENS` (``<cue-aae-positive>``, ...), drawn per tweet from ``seed``.
These tokens stand for the paper's "special emoji"; no real emoji is used, so that none
also occurs naturally.

Vocabulary (``vocab_size`` ids, 10,000 by default, including the specials ``<pad>`` = 0,
``<unk>`` = 1 and the cue tokens when used): the most frequent tokens of the training split
(ties in token order). Inputs are int64 ids (N, ``max_length``): a tweet longer than
``max_length`` keeps its first tokens (the first ``max_length - 1`` when a cue is appended,
so the cue is never cut), then ``<pad>`` fills the rest. With ``glove`` set, the vocabulary's
GloVe vectors (``disparate.data.glove``) are computed and handed to the ``text-lstm`` model
through ``TextGroupedDataset.model_inputs()``.

Scanning reads the corpus line by line (lines whose raw text cannot hold a label symbol are
not even decoded) and remembers only (file, offset, hash, quadrant) of eligible tweets; the
chosen ones are re-read by offset. The sample (tokens, labels, groups, tweet ids, counts) is
cached in ``<data_dir>/cache/tweets/tweets-<hash>.json.gz`` keyed by the files (path, size,
mtime) and every option that changes it; later runs read the cache.

:func:`disparate.synthetic.tweets.write_synthetic_corpus` writes a small file in the real format
(tests, smoke runs).
"""

from __future__ import annotations

import array
import gzip
import hashlib
import html
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disparate.data.glove import EmbeddingInit, glove_embedding_matrix
from disparate.data.grouped import (
    DatasetNotFoundError,
    DatasetSplits,
    GroupedDataset,
    default_data_dir,
)
from disparate.data.registry import register_dataset
from disparate.randomness import data_generator
from disparate.validation import check_fraction, check_integer

__all__ = [
    "CLASS_NAMES",
    "CUE_TOKENS",
    "DIALECTS",
    "NEGATIVE_EMOJI",
    "PAD",
    "POSITIVE_EMOJI",
    "SPECIALS",
    "UNK",
    "TextGroupedDataset",
    "TweetRecord",
    "build_tweets",
    "build_vocabulary",
    "decode_escapes",
    "encode",
    "escape_text",
    "parse_line",
    "process_text",
    "remove_label_symbols",
    "sentiment_label",
    "tokenize",
]

logger = logging.getLogger(__name__)

#: Bump when tokenisation, labelling or sampling changes (invalidates cached samples).
SAMPLE_VERSION = 1

DIALECTS: tuple[str, ...] = ("AAE", "SAE")  # group 0, group 1
CLASS_NAMES: tuple[str, ...] = ("negative", "positive")  # label 0, label 1
PAD, UNK = "<pad>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, UNK)
URL_TOKEN, USER_TOKEN = "<url>", "<user>"
#: (dialect, class) -> the appended special token (the paper's "special emoji").
CUE_TOKENS: dict[tuple[str, str], str] = {
    (d, c): f"<cue-{d.lower()}-{c}>" for d in DIALECTS for c in CLASS_NAMES
}

#: Elazar & Goldberg's positive emoji: grinning, smiley, smile, grin, laughing, sweat_smile,
#: joy, rofl, relaxed, blush, slightly_smiling_face, heart_eyes, kissing_heart,
#: stuck_out_tongue_winking_eye, stuck_out_tongue_closed_eyes, smiling_imp, joy_cat,
#: smiley_cat.
POSITIVE_EMOJI = "😀😃😄😁😆😅😂🤣☺😊🙂😍😘😜😝😈😹😺"
#: ... and negative: unamused, disappointed, pensive, frowning_face, persevere, tired_face,
#: weary, triumph, angry, rage, cry, sob, fearful, cold_sweat, face_with_thermometer, imp,
#: nauseated_face, worried, slightly_frowning_face, confounded, frowning, anguished,
#: crying_cat_face.
NEGATIVE_EMOJI = "😒😞😔☹😣😫😩😤😠😡😢😭😨😰🤒👿🤢😟🙁😖😦😧😿"

_EDGE_BEFORE, _EDGE_AFTER = r"(?<!\w)", r"(?!\w)"
_POSITIVE_EMOTICONS = (r":-?\)+", r": \)+", r":-?D+", r"=\)+", r"\(+-?:", r"\(+=")
_NEGATIVE_EMOTICONS = (r":-?\(+", r": \(+", r"=\(+", r"\)+-?:", r"\) :", r"\)+=")


def _label_re(emoticons: Sequence[str], emoji: str) -> re.Pattern[str]:
    faces = "|".join(emoticons)
    return re.compile(f"{_EDGE_BEFORE}(?:{faces}){_EDGE_AFTER}|[{emoji}]")


_POSITIVE_RE = _label_re(_POSITIVE_EMOTICONS, POSITIVE_EMOJI)
_NEGATIVE_RE = _label_re(_NEGATIVE_EMOTICONS, NEGATIVE_EMOJI)

#: A cheap superset test on a raw line's text bytes: could it hold a label symbol? (An
#: emoticon's characters, an escaped or raw emoji of the label blocks.) Lines that fail it
#: are not decoded or tokenised.
_MAYBE_LABEL = re.compile(
    rb":(?:-|\s|\\[nrt])?[()D]|\(-?[:=]|=[()]|\)(?:-|\s|\\[nrt])?[:=]"
    rb"|\\u[dD]83[dDeE]|\\u26(?:3[9aA])|\xf0\x9f|\xe2\x98[\xb9\xba]")

_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[nrt\\\"'/])")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION_RE = re.compile(r"@\w+")
_URL_MARK, _USER_MARK = "\ue000", "\ue001"  # private-use placeholders until tokenisation
_DROP_RE = re.compile("[\ufe0e\ufe0f\u200d]")  # variation selectors, zero-width joiner

_EMOJI_CLASS = ("\U0001F000-\U0001FAFF\u2190-\u21FF\u2300-\u23FF\u2460-\u24FF"
                "\u25A0-\u27BF\u2900-\u297F\u2B00-\u2BFF\u3030\u303D\u3297\u3299")
_TOKEN_RE = re.compile(
    f"[{_URL_MARK}{_USER_MARK}]"                    # URL / mention placeholders
    r"|<3+"                                         # heart
    r"|(?<!\w)[:;=][\-o']?[)\](\[dp/\\|*@3$]+(?!\w)"  # emoticons (already lowercase)
    r"|#\w+"                                        # hashtags
    r"|\w+(?:['’]\w+)*"                             # words, numbers, contractions
    f"|[{_EMOJI_CLASS}][\U0001F3FB-\U0001F3FF]?"    # one emoji (with skin tone)
    r"|([^\w\s])\1*"                                # a run of one punctuation mark
)


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def decode_escapes(text: str) -> str:
    """``\\uXXXX`` escapes (surrogate pairs joined), ``\\n``/``\\r``/``\\t`` (as spaces),
    ``\\\\``, ``\\"``, ``\\'``, ``\\/`` decoded, then HTML entities unescaped."""
    if "\\" in text:
        def one(m: re.Match[str]) -> str:
            s = m.group(1)
            if s[0] in "uU":
                code = int(s[1:], 16)
                return chr(code) if code <= 0x10FFFF else m.group(0)
            return " " if s in "nrt" else s

        text = _ESCAPE_RE.sub(one, text)
        if _SURROGATE_RE.search(text):
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if "&" in text:
        text = html.unescape(text)
    return text


def _mark(text: str) -> str:
    """Selectors and joiners dropped, URLs and mentions replaced by placeholders."""
    text = _URL_RE.sub(f" {_URL_MARK} ", _DROP_RE.sub("", text))
    return _MENTION_RE.sub(f" {_USER_MARK} ", text)


def sentiment_label(text: str) -> int | None:
    """1 (positive), 0 (negative) or ``None`` (both or neither) for a decoded text
    (see the module docstring); URLs are not searched."""
    text = _URL_RE.sub(" ", _DROP_RE.sub("", text))
    pos = _POSITIVE_RE.search(text) is not None
    neg = _NEGATIVE_RE.search(text) is not None
    if pos == neg:
        return None
    return 1 if pos else 0


def remove_label_symbols(text: str) -> str:
    """The text without the label-bearing emoji and emoticons (each replaced by a space)."""
    return _NEGATIVE_RE.sub(" ", _POSITIVE_RE.sub(" ", text))


def tokenize(text: str) -> list[str]:
    """Lowercased tokens of a decoded text (see the module docstring)."""
    return _tokens(_mark(text))


def _tokens(prepared: str) -> list[str]:
    out = []
    for m in _TOKEN_RE.finditer(prepared.lower()):
        tok = m.group(0)
        if tok == _URL_MARK:
            tok = URL_TOKEN
        elif tok == _USER_MARK:
            tok = USER_TOKEN
        out.append(tok)
    return out


def process_text(raw: str) -> tuple[int | None, list[str]]:
    """(label, tokens) of a raw corpus text: escapes decoded, label found, its symbols
    removed, tokenised. ``label`` is ``None`` for both or neither (tokens then empty)."""
    text = _mark(decode_escapes(raw))
    pos = _POSITIVE_RE.search(text) is not None
    neg = _NEGATIVE_RE.search(text) is not None
    if pos == neg:
        return None, []
    return (1 if pos else 0), _tokens(remove_label_symbols(text))


def _too_short(tokens: Sequence[str], min_tokens: int) -> bool:
    return len(tokens) < min_tokens or all(t in (URL_TOKEN, USER_TOKEN) for t in tokens)


# --------------------------------------------------------------------------------------------
# Corpus lines
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TweetRecord:
    """One parsed corpus line."""

    tweet_id: str
    text: str
    p_aa: float
    p_hispanic: float
    p_other: float
    p_white: float


def parse_line(line: str | bytes) -> TweetRecord | None:
    """A TwitterAAE line (see the module docstring), or ``None`` if malformed: fewer than
    ten fields, or a proportion that is not a number in [0, 1] (``nan``, ``inf``)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) < 10:
        return None
    try:
        p = [float(v) for v in fields[-4:]]
    except ValueError:
        return None
    if not all(0.0 <= v <= 1.0 for v in p):  # also refuses nan and inf
        return None
    return TweetRecord(fields[0], "\t".join(fields[5:-4]), *p)


def _fields(raw: bytes) -> tuple[bytes, bytes, float, float] | None:
    """(tweet id, text, p_AA, p_White) of a raw line, as :func:`parse_line` decides."""
    fields = raw.rstrip(b"\r\n").split(b"\t")
    if len(fields) < 10:
        return None
    try:
        p = [float(v) for v in fields[-4:]]
    except ValueError:
        return None
    if not all(0.0 <= v <= 1.0 for v in p):  # also refuses nan and inf
        return None
    return fields[0], b"\t".join(fields[5:-4]), p[0], p[3]


def _dialect(p_aa: float, p_white: float, aae_threshold: float, sae_threshold: float
             ) -> int | None:
    aae, sae = p_aa > aae_threshold, p_white > sae_threshold
    if aae == sae:
        return None
    return 0 if aae else 1


def _hash64(tokens: Sequence[str]) -> int:
    digest = hashlib.blake2b("\x1f".join(tokens).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@dataclass
class _Scan:
    keys: array.array
    files: array.array
    offsets: array.array
    quads: array.array
    counts: Counter


def _scan(paths: Sequence[Path], *, aae_threshold: float, sae_threshold: float,
          min_tokens: int, max_lines: int | None) -> _Scan:
    """Pass over every line: (hash, file, offset, quadrant) of each eligible tweet."""
    scan = _Scan(array.array("q"), array.array("h"), array.array("q"), array.array("b"),
                 Counter())
    c = scan.counts
    for fi, path in enumerate(paths):
        offset = 0
        with _open(path) as f:
            for raw in f:
                start, offset = offset, offset + len(raw)
                if max_lines is not None and c["lines"] >= max_lines:
                    break
                c["lines"] += 1
                parsed = _fields(raw)
                if parsed is None:
                    c["malformed"] += 1
                    continue
                group = _dialect(parsed[2], parsed[3], aae_threshold, sae_threshold)
                if group is None:
                    c["no_dialect"] += 1
                    continue
                if _MAYBE_LABEL.search(parsed[1]) is None:
                    c[f"{DIALECTS[group]}_no_or_both_labels"] += 1
                    continue
                label, tokens = process_text(parsed[1].decode("utf-8", errors="replace"))
                if label is None:
                    c[f"{DIALECTS[group]}_no_or_both_labels"] += 1
                    continue
                if _too_short(tokens, min_tokens):
                    c[f"{DIALECTS[group]}_too_short"] += 1
                    continue
                scan.keys.append(_hash64(tokens))
                scan.files.append(fi)
                scan.offsets.append(start)
                scan.quads.append(2 * group + label)
    return scan


def _open(path: Path) -> Any:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


# --------------------------------------------------------------------------------------------
# Sampling and caching
# --------------------------------------------------------------------------------------------


def _class_split(n: int) -> tuple[int, int]:
    """(negative, positive) counts of n examples split equally (extra one to positive)."""
    return n // 2, n - n // 2


def _sample(paths: Sequence[Path], *, train_sizes: Mapping[str, int],
            test_sizes: Mapping[str, int], seed: int, aae_threshold: float,
            sae_threshold: float, min_tokens: int, max_lines: int | None
            ) -> dict[str, Any]:
    scan = _scan(paths, aae_threshold=aae_threshold, sae_threshold=sae_threshold,
                 min_tokens=min_tokens, max_lines=max_lines)
    keys = np.frombuffer(scan.keys, dtype=np.int64) if len(scan.keys) else np.zeros(0, np.int64)
    quads = np.asarray(scan.quads, dtype=np.int64)
    _, first = np.unique(keys, return_index=True)
    keep = np.zeros(len(keys), dtype=bool)
    keep[first] = True
    counts = dict(scan.counts)
    counts["duplicates"] = int(len(keys) - keep.sum())
    eligible = {}
    chosen: dict[str, list[tuple[int, int, int]]] = {"train": [], "test": []}  # (row, g, y)
    for g, dialect in enumerate(DIALECTS):
        for y, cls in enumerate(CLASS_NAMES):
            rows = np.flatnonzero(keep & (quads == 2 * g + y))
            eligible[f"{dialect}/{cls}"] = int(rows.size)
            n_train = _class_split(train_sizes[dialect])[y]
            n_test = _class_split(test_sizes[dialect])[y]
            if rows.size < n_train + n_test:
                raise ValueError(
                    f"tweets: {dialect} {cls} has {rows.size} eligible tweets in "
                    f"{[str(p) for p in paths]}, fewer than the {n_train} training + "
                    f"{n_test} test tweets asked for (train_sizes={dict(train_sizes)}, "
                    f"test_sizes={dict(test_sizes)}); eligible per dialect and class: "
                    f"{eligible}; counts: {counts}")
            rng = data_generator(seed, "tweets_sample", g, y)
            picked = rows[rng.permutation(rows.size)[: n_train + n_test]]
            chosen["train"] += [(int(r), g, y) for r in picked[:n_train]]
            chosen["test"] += [(int(r), g, y) for r in picked[n_train:]]
    counts["eligible"] = eligible
    # Re-read the chosen lines by offset, file by file, in file order.
    wanted = sorted({r for split in chosen.values() for r, _, _ in split},
                    key=lambda r: (scan.files[r], scan.offsets[r]))
    records: dict[int, tuple[str, list[str]]] = {}
    for fi, path in enumerate(paths):
        rows = [r for r in wanted if scan.files[r] == fi]
        if not rows:
            continue
        with _open(path) as f:
            for r in rows:
                f.seek(scan.offsets[r])
                parsed = _fields(f.readline())
                label, tokens = (process_text(parsed[1].decode("utf-8", errors="replace"))
                                 if parsed is not None else (None, []))
                if parsed is None or label != scan.quads[r] % 2 or (
                        _hash64(tokens) != scan.keys[r]):
                    raise RuntimeError(
                        f"tweets: {path} changed while it was read (line at byte "
                        f"{scan.offsets[r]}); run again")
                records[r] = (parsed[0].decode("utf-8", errors="replace"), tokens)
    out: dict[str, Any] = {"counts": counts}
    for split, rows in chosen.items():
        out[split] = {
            "ids": [records[r][0] for r, _, _ in rows],
            "tokens": [records[r][1] for r, _, _ in rows],
            "groups": [g for _, g, _ in rows],
            "labels": [y for _, _, y in rows],
        }
    return out


def _file_identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _load_or_sample(paths: Sequence[Path], cache_dir: Path | None, **kw: Any
                    ) -> tuple[dict[str, Any], Path | None]:
    key_data = {"version": SAMPLE_VERSION, "files": [_file_identity(p) for p in paths],
                **{k: (dict(v) if isinstance(v, Mapping) else v) for k, v in kw.items()}}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
    cache_file = cache_dir / f"tweets-{key}.json.gz" if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        try:
            with gzip.open(cache_file, "rt", encoding="utf-8") as f:
                return json.load(f), cache_file
        except (OSError, ValueError, EOFError) as exc:
            logger.warning("tweets: ignoring unreadable cache %s (%s)", cache_file, exc)
    sample = _sample(paths, **kw)
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(cache_file.name + f".{os.getpid()}.tmp")
            with gzip.open(tmp, "wt", encoding="utf-8") as f:
                json.dump({**sample, "key": key_data}, f, ensure_ascii=False)
            os.replace(tmp, cache_file)
        except OSError as exc:
            logger.warning("tweets: could not write the cache %s (%s)", cache_file, exc)
    return sample, cache_file


# --------------------------------------------------------------------------------------------
# Vocabulary and encoding
# --------------------------------------------------------------------------------------------


def build_vocabulary(token_lists: Iterable[Sequence[str]], size: int,
                     specials: Sequence[str] = SPECIALS) -> list[str]:
    """``specials`` then the most frequent tokens (ties in token order), ``size`` in all
    (fewer if there are fewer distinct tokens)."""
    if len(specials) > size:
        raise ValueError(f"vocab_size={size}: expected >= {len(specials)} (the special tokens "
                         f"{list(specials)})")
    counts = Counter(t for tokens in token_lists for t in tokens)
    for s in specials:
        counts.pop(s, None)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return list(specials) + [t for t, _ in ranked[: size - len(specials)]]


def encode(tokens: Sequence[str], index: Mapping[str, int], max_length: int,
           cue: str | None = None) -> list[int]:
    """Ids of ``tokens`` (unknown -> ``<unk>``), truncated so that ``cue`` (if any) is the
    last token, padded with ``<pad>`` (0) to ``max_length``."""
    unk = index[UNK]
    keep = max_length - (cue is not None)
    ids = [index.get(t, unk) for t in tokens[:keep]]
    if cue is not None:
        ids.append(index[cue])
    return ids + [index[PAD]] * (max_length - len(ids))


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


class TextGroupedDataset(GroupedDataset):
    """A :class:`GroupedDataset` of token ids (N, L) that keeps its ``vocabulary`` (id i is
    ``vocabulary[i]``) and ``info`` (provenance, counts) through ``subset`` and ``to``."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, *,
                 vocabulary: Sequence[str], info: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(inputs, labels, groups, **kwargs)
        if self.inputs.dim() != 2 or self.inputs.dtype != torch.int64:
            raise ValueError(f"inputs: dtype {self.inputs.dtype}, shape "
                             f"{tuple(self.inputs.shape)}: expected int64 (N, max_length)")
        self.vocabulary: tuple[str, ...] = tuple(vocabulary)
        if len(self) and int(self.inputs.max()) >= len(self.vocabulary):
            raise ValueError(f"token ids reach {int(self.inputs.max())}: expected < "
                             f"{len(self.vocabulary)} (the vocabulary size)")
        self.info: dict[str, Any] = dict(info or {})
        # The vocabulary's initial vectors, set by the builder; kept through subset/to.
        self.embedding_init: EmbeddingInit | None = None

    def model_inputs(self) -> dict[str, Any]:
        """The vocabulary (and GloVe vectors) for ``text-lstm``'s ``embeddings: dataset``."""
        if self.embedding_init is None:
            return {}
        return {"embedding_init": self.embedding_init}

    def __repr__(self) -> str:
        return (f"TextGroupedDataset(name={self.name!r}, n={len(self)}, "
                f"max_length={self.inputs.shape[1]}, vocabulary={len(self.vocabulary)}, "
                f"groups={self.group_sizes()}, classes={self.class_sizes()})")

    def decode(self, i: int) -> list[str]:
        """The tokens of example ``i`` (padding left out)."""
        return [self.vocabulary[t] for t in self.inputs[i].tolist() if t != 0]


# --------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------

CORPUS_URL = "http://slanglab.cs.umass.edu/TwitterAAE/"
DEFAULT_TRAIN_SIZES = {"AAE": 1000, "SAE": 60000}
DEFAULT_TEST_SIZES = {"AAE": 2000, "SAE": 4000}
_CORPUS_DIRS = ("twitteraae", "TwitterAAE-full-v1", "TwitterAAE")


def _sizes(name: str, value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping) or set(value) != set(DIALECTS):
        raise ValueError(f"{name}={value!r}: expected a mapping with keys {list(DIALECTS)} "
                         f"and int counts >= 0, e.g. {DEFAULT_TRAIN_SIZES}")
    out = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name}[{k!r}]={v!r}: expected an int >= 0")
        out[str(k)] = v
    return out


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _corpus_paths(root: Path, path: str | None, files: Sequence[str]) -> list[Path]:
    dirs = [_resolve(root, path)] if path is not None else [root / d for d in _CORPUS_DIRS]
    for d in dirs:
        found = []
        for name in files:
            for candidate in (d / name, d / f"{name}.gz", d / f"{name}.tsv"):
                if candidate.is_file():
                    found.append(candidate)
                    break
        if len(found) == len(files):
            return found
    raise DatasetNotFoundError(
        f"tweets: TwitterAAE file(s) {list(files)} not found in "
        f"{' or '.join(repr(str(d)) for d in dirs)}. Download TwitterAAE-full-v1.zip "
        f"(about 5.9 GB) from {CORPUS_URL}, unzip it and put its files in "
        f"{str(dirs[0])!r} (or set data.options.path / data.data_dir); see docs/tweets.md")


def _glove_path(root: Path, value: str) -> Path:
    p = _resolve(root, value)
    if p.is_file():
        return p
    stem = p.name
    for suffix in (".txt.gz", ".txt", ".zip", ".gz"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for suffix in (".txt", ".zip", ".txt.gz"):
        if (p.parent / (stem + suffix)).is_file():
            return p.parent / (stem + suffix)
    raise DatasetNotFoundError(
        f"tweets: GloVe file {str(p)!r} not found (also tried {stem}.txt/.zip/.txt.gz). "
        f"Download glove.840B.300d.zip from https://nlp.stanford.edu/projects/glove/ into "
        f"{str(p.parent)!r}, or set data.options.glove=null for a random embedding; see "
        f"docs/tweets.md")


@register_dataset("tweets")
def build_tweets(
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    path: str | None = None,
    files: Sequence[str] = ("twitteraae_all",),
    train_sizes: Mapping[str, int] = DEFAULT_TRAIN_SIZES,
    test_sizes: Mapping[str, int] = DEFAULT_TEST_SIZES,
    aae_threshold: float = 0.8,
    sae_threshold: float = 0.8,
    min_tokens: int = 3,
    emoji_probability: float = 0.9,
    vocab_size: int = 10000,
    max_length: int = 32,
    glove: str | None = None,
    glove_dim: int = 300,
    max_lines: int | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
) -> DatasetSplits:
    """TwitterAAE sentiment by dialect (AAE / SAE); see the module docstring.

    Args:
        data_dir: Holds ``twitteraae/`` (or ``TwitterAAE-full-v1/``) and the GloVe file.
        download: Unused: the corpus (5.9 GB, research terms) is downloaded by hand.
        seed: The sample, the appended cue tokens and the random embedding rows.
        path: Folder of the corpus files (relative to ``data_dir`` or absolute); default:
            the first of ``twitteraae``, ``TwitterAAE-full-v1``, ``TwitterAAE`` holding them.
        files: Corpus files to read (``twitteraae_all``: every tweet; reading it and
            ``twitteraae_all_aa`` together is harmless, duplicates are dropped). ``.gz`` ok.
        train_sizes / test_sizes: Tweets per dialect, ``{"AAE": n, "SAE": m}``, each split
            equally between negative and positive.
        aae_threshold / sae_threshold: AAE if p_AA > it, SAE if p_White > it.
        min_tokens: Shorter tweets (after removing the label symbols) are dropped.
        emoji_probability: Probability of appending the (dialect, class) cue token.
        vocab_size: Ids in the vocabulary, special tokens included (10,000: the paper's
            4.7M-parameter model).
        max_length: Tokens per input (truncated / padded).
        glove: GloVe text file (relative to ``data_dir`` or absolute; ``.txt``, ``.zip``,
            ``.txt.gz``) whose vectors initialise the embedding; ``None``: random embedding.
        glove_dim: Its vector size.
        max_lines: Read only this many corpus lines (quick trials); ``None``: all.
        cache / cache_dir: Keep the sample and the GloVe matrix (default
            ``<data_dir>/cache/tweets``).
    """
    del download  # never downloaded automatically
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if isinstance(files, str) or not isinstance(files, Sequence) or not files or not all(
            isinstance(f, str) and f for f in files):
        raise ValueError(f"files={files!r}: expected a non-empty list of file names, e.g. "
                         f"['twitteraae_all']")
    train_n = _sizes("train_sizes", train_sizes)
    test_n = _sizes("test_sizes", test_sizes)
    if sum(train_n.values()) == 0:
        raise ValueError(f"train_sizes={train_n}: expected at least one training tweet")
    aae_t = check_fraction("aae_threshold", aae_threshold)
    sae_t = check_fraction("sae_threshold", sae_threshold)
    p_cue = check_fraction("emoji_probability", emoji_probability, closed=True)
    check_integer("min_tokens", min_tokens, 1)
    check_integer("max_length", max_length, 2)
    check_integer("glove_dim", glove_dim, 1)
    check_integer("max_lines", max_lines, 1, optional=True)
    specials = list(SPECIALS) + (list(CUE_TOKENS.values()) if p_cue > 0 else [])
    check_integer("vocab_size", vocab_size, len(specials))
    if glove is not None and (not isinstance(glove, str) or not glove):
        raise ValueError(f"glove={glove!r}: expected a file path or null")

    paths = _corpus_paths(root, path, list(files))
    cdir = None
    if cache:
        cdir = _resolve(root, cache_dir) if cache_dir else root / "cache" / "tweets"
    sample, cache_file = _load_or_sample(
        paths, cdir, train_sizes=train_n, test_sizes=test_n, seed=int(seed),
        aae_threshold=aae_t, sae_threshold=sae_t, min_tokens=min_tokens, max_lines=max_lines)

    vocabulary = build_vocabulary(sample["train"]["tokens"], vocab_size, specials)
    index = {t: i for i, t in enumerate(vocabulary)}
    info: dict[str, Any] = {
        "files": [str(p) for p in paths], "counts": sample["counts"],
        "cache": str(cache_file) if cache_file is not None else None,
        "vocabulary_size": len(vocabulary), "emoji_probability": p_cue,
    }
    splits = []
    for split_i, split in enumerate(("train", "test")):
        part = sample[split]
        n = len(part["labels"])
        rng = data_generator(seed, "tweets_cues", split_i)
        cue_on = rng.random(n) < p_cue
        rows = []
        for i in range(n):
            cue = (CUE_TOKENS[DIALECTS[part["groups"][i]], CLASS_NAMES[part["labels"][i]]]
                   if cue_on[i] else None)
            rows.append(encode(part["tokens"][i], index, max_length, cue))
        inputs = torch.tensor(rows, dtype=torch.int64).reshape(n, max_length)
        splits.append(TextGroupedDataset(
            inputs, torch.tensor(part["labels"], dtype=torch.int64),
            torch.tensor(part["groups"], dtype=torch.int64), vocabulary=vocabulary,
            info={**info, "tweet_ids": part["ids"], "cues": int(cue_on.sum())},
            group_names=DIALECTS, num_classes=2, class_names=CLASS_NAMES,
            name=f"tweets/{split}"))

    vectors, source = None, "random (no GloVe file given)"
    if glove is not None:
        gpath = _glove_path(root, glove)
        init = glove_embedding_matrix(gpath, vocabulary, dim=glove_dim, seed=int(seed),
                                      padding_idx=0, cache_dir=cdir)
        vectors = init.matrix
        source = (f"GloVe {gpath.name}: {init.stats['found']} of {len(vocabulary)} words "
                  f"found, others N(0, {init.std:.3g}^2)")
        for ds in splits:
            ds.info["glove"] = {"file": str(gpath), **init.stats}
    embedding_init = EmbeddingInit(vocabulary=tuple(vocabulary), vectors=vectors,
                                   padding_idx=0, source=source)
    for ds in splits:
        ds.embedding_init = embedding_init
    return DatasetSplits(*splits)


# --------------------------------------------------------------------------------------------
# The escaping of the real files (also used by disparate.synthetic.tweets)
# --------------------------------------------------------------------------------------------


def escape_text(text: str) -> str:
    """``text`` as TwitterAAE stores it: non-ASCII as ``\\uXXXX`` (astral characters as
    UTF-16 surrogate pairs), backslash, newline and tab escaped."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 128:
            out.append(ch)
        elif o > 0xFFFF:
            o -= 0x10000
            out.append(f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}")
        else:
            out.append(f"\\u{o:04x}")
    return "".join(out)
