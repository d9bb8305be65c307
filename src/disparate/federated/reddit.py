"""Reddit comments (pushshift monthly dumps) as a federated next-word-prediction dataset.

Paper Section 4.4: one month of Reddit comments (November 2017, ``RC_2017-11``), participants =
authors with 150 to 500 posts (80,000 users, 247 posts on average), every post a sentence, the
50,000 most frequent words plus ``<unk>`` for everything else, sequences of 64 tokens.

Input: pushshift comment dumps, one JSON object per line (``author``, ``body``, ``subreddit``,
``created_utc``, ``id``, ...), plain or compressed as ``.bz2``, ``.xz``, ``.zst`` (pushshift's
long-window zstd, read with a 2 GiB window) or ``.gz``. Files are streamed line by line and
never loaded whole.

Preprocessing (:func:`preprocess`) makes three streaming passes and caches the result, so it
runs once per (input files, options):

1. count the posts of every author (dropping ``[deleted]`` authors, bots, and ``[deleted]`` /
   ``[removed]`` bodies) and select the authors with ``min_posts <= posts <= max_posts``
   (optionally a seeded random subset of ``max_participants`` of them);
2. tokenize the selected authors' posts into a temporary file and count words;
3. keep the ``vocab_size`` most frequent words, map the temporary file to token ids and write
   every participant's posts, in chronological order, into one flat token array; the last
   ``test_fraction`` of each participant's posts (by ``created_utc``) are their test data.

Tokenization (:func:`tokenize`): HTML entities unescaped, lower-cased, split on whitespace;
surrounding punctuation is stripped; a token that is then a word (letters with inner
apostrophes) is kept, a token of punctuation only is dropped, anything else (emojis, symbols,
numbers, URLs) becomes ``<unk>``, as do words outside the vocabulary. Every post ends with
``<eos>``. (The paper's released code dropped one-letter words and symbols instead; this
reader keeps "i" and "a" and maps symbols to ``<unk>`` as the paper's text describes.)

The cache (``<cache_dir>/reddit-<key>/``) holds ``tokens.npy`` (uint16 token ids, memory-mapped
on load), ``participants.npz`` (offsets, vocabulary sizes), ``vocab.json``, ``authors.json``
and ``meta.json`` (options, input files and counts: comments read, authors dropped, mean posts
per participant, ...). The key hashes the options and the input files' names, sizes and
modification times.
"""

from __future__ import annotations

import bz2
import contextlib
import glob
import gzip
import hashlib
import html
import io
import json
import lzma
import os
import re
import shutil
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from disparate.fileio import CorruptFileError
from disparate.randomness import data_generator

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_BOTS",
    "EOS",
    "UNK",
    "FederatedTextData",
    "RedditOptions",
    "iter_comments",
    "is_bot",
    "load_reddit",
    "open_dump",
    "preprocess",
    "resolve_files",
    "tokenize",
]

#: 2: the max_participants subset is drawn from the seed tree (stream reddit_participants).
CACHE_VERSION = 2
UNK = "<unk>"
EOS = "<eos>"
UNK_ID = 0
EOS_ID = 1

#: Accounts dropped as bots besides names matching :data:`_BOT_NAME` (case-insensitive).
DEFAULT_BOTS: frozenset[str] = frozenset({
    "automoderator", "autotldr", "remindmebot", "wikitextbot", "tweetposter",
    "totesmessenger", "imguralbumbot", "converter-bot", "timezone_bot", "gifv-bot",
    "sneakpeekbot", "hearing-aid_bot", "anti-gif-bot", "video_descriptionbot",
    "goodbot_badbot", "b0trank", "transcribot", "transcribersofreddit", "substitute-bot",
})
_BOT_NAME = re.compile(r"(?:bot$|^bot[_-]|[_-]bot(?:$|[_-]))", re.IGNORECASE)
_DELETED_AUTHORS = frozenset({"[deleted]", "[removed]", ""})
_DELETED_BODIES = frozenset({"[deleted]", "[removed]"})

_STRIP = "".join(chr(c) for c in range(33, 127) if not chr(c).isalnum()) + "“”‘’«»…–—"
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")

DEFAULT_FILE_PATTERNS: tuple[str, ...] = ("RC_*",)
ZSTD_MAX_WINDOW = 2**31  # pushshift compresses with --long=31

ERR_NO_FILES = (
    "data: no Reddit dump files found for {patterns} in {data_dir!r}. Download a pushshift "
    "monthly comment dump (the paper used RC_2017-11, one JSON object per line, .bz2/.xz/.zst) "
    "into data.data_dir or name the files in data.options.files; this project cannot download "
    "it for you"
)
ERR_TRUNCATED = (
    "{path}: {what}; the dump is truncated or corrupt and was not used (nothing cached): "
    "download it again"
)
ERR_FORMAT = "{path}: unsupported dump format; expected .json/.jsonl/plain, .bz2, .xz, .zst, .gz"
ERR_NO_PARTICIPANTS = (
    "data: no author has between min_posts={min_posts} and max_posts={max_posts} posts in "
    "{files} ({authors} authors after dropping deleted authors and bots)"
)


# --------------------------------------------------------------------------------- options


@dataclass(frozen=True, kw_only=True)
class RedditOptions:
    """Preprocessing options (``data.options`` of a ``reddit`` experiment).

    Attributes:
        files: Dump files or glob patterns, relative to ``data.data_dir`` unless absolute;
            default ``RC_*`` (every monthly comment dump in the directory).
        min_posts / max_posts: Keep authors with this many posts (paper: 150 and 500).
        max_participants: Keep a seeded random subset of this many of them (``None``: all).
        max_comments: Read only the first this many lines of the dumps (``None``: all) --
            a quick subset of a month (its first hours), for reduced experiments.
        vocab_size: Number of most frequent words kept (paper: 50,000); ``<unk>`` and
            ``<eos>`` come on top.
        seq_len: Tokens per training sequence (BPTT length; paper: 64).
        test_fraction: Fraction of each participant's posts, the latest ones, held out.
        drop_bots: Drop known bots and names that look like bots.
        extra_bots: Further account names to drop (case-insensitive).
        cache_dir: Where preprocessed data is cached (default ``<data_dir>/.disparate-cache``).
    """

    files: tuple[str, ...] = DEFAULT_FILE_PATTERNS
    min_posts: int = 150
    max_posts: int = 500
    max_participants: int | None = None
    max_comments: int | None = None
    vocab_size: int = 50_000
    seq_len: int = 64
    test_fraction: float = 0.2
    drop_bots: bool = True
    extra_bots: tuple[str, ...] = ()
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        files = (self.files,) if isinstance(self.files, str) else tuple(self.files)
        if not files or not all(isinstance(f, str) and f for f in files):
            raise ValueError(f"data.options.files={self.files!r}: expected non-empty paths")
        object.__setattr__(self, "files", files)
        object.__setattr__(self, "extra_bots", tuple(str(b) for b in self.extra_bots))
        for name in ("min_posts", "max_posts", "vocab_size", "seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"data.options.{name}={value!r}: expected an integer >= 1")
        if self.max_posts < self.min_posts:
            raise ValueError(f"data.options.max_posts={self.max_posts!r}: expected >= "
                             f"min_posts={self.min_posts!r}")
        if self.vocab_size + 2 > 2**32:
            raise ValueError(f"data.options.vocab_size={self.vocab_size!r}: too large")
        for name in ("max_participants", "max_comments"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"data.options.{name}={value!r}: expected >= 1 or null")
        tf = self.test_fraction
        if isinstance(tf, bool) or not isinstance(tf, int | float) or not 0 <= tf < 1:
            raise ValueError(f"data.options.test_fraction={tf!r}: expected in [0, 1)")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> RedditOptions:
        """From ``data.options``; unknown keys are an error naming the valid ones."""
        valid = [f for f in cls.__dataclass_fields__]
        for key in options:
            if key not in valid:
                raise ValueError(f"data.options.{key}: unknown option for dataset 'reddit'; "
                                 f"valid options: {', '.join(valid)}")
        kwargs = dict(options)
        for key in ("files", "extra_bots"):
            if key in kwargs and isinstance(kwargs[key], list | tuple):
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def preprocessing_key(self) -> dict[str, Any]:
        """The options that change the preprocessed data (``seq_len`` does not)."""
        out = asdict(self)
        for key in ("files", "seq_len", "cache_dir"):
            out.pop(key)
        out["extra_bots"] = sorted(b.lower() for b in self.extra_bots)
        return out


# --------------------------------------------------------------------------------- reading


def open_dump(path: str | Path) -> IO[str]:
    """Open a dump for streaming text reads, decompressing by suffix (never reads it whole)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    if suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8", errors="replace")
    if suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    if suffix == ".zst":
        try:
            import zstandard
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(f"{path}: reading .zst dumps needs the 'zstandard' package "
                              "(pip install 'disparate[reddit]')") from exc
        reader = io.BufferedReader(_VerifiedZstd(path, zstandard), buffer_size=1 << 20)
        return io.TextIOWrapper(reader, encoding="utf-8", errors="replace")
    if suffix in (".7z", ".zip", ".tar"):
        raise ValueError(ERR_FORMAT.format(path=path))
    return path.open("r", encoding="utf-8", errors="replace")


class _VerifiedZstd(io.RawIOBase):
    """The decompressed bytes of a ``.zst`` file, frame after frame, read to its verified end.

    ``zstandard``'s stream reader ends quietly at a truncated frame; this one raises
    :class:`~disparate.fileio.CorruptFileError` naming the file when the input ends inside a
    frame (or holds no frame), and for data that is not zstd.
    """

    def __init__(self, path: Path, zstandard: Any) -> None:
        super().__init__()
        self._path, self._zstd = path, zstandard
        self._raw = path.open("rb")
        self._frame = self._new_frame()
        self._pending = b""
        self._frames = 0  # frames read to their end
        self._fed = False  # the current frame has had input

    def _new_frame(self) -> Any:
        return self._zstd.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompressobj()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._raw.read(1 << 20)
            if not chunk:
                if not self._frame.eof and (self._frames == 0 or self._fed):
                    raise CorruptFileError(ERR_TRUNCATED.format(
                        path=self._path, what="the input ends inside a zstd frame"))
                return 0
            self._pending = self._decompress(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _decompress(self, chunk: bytes) -> bytes:
        out = []
        try:
            while chunk:
                out.append(self._frame.decompress(chunk))
                self._fed = True
                chunk = b""
                if self._frame.eof:  # a frame ended: the rest of the chunk starts the next
                    self._frames += 1
                    chunk = self._frame.unused_data
                    self._frame, self._fed = self._new_frame(), False
        except self._zstd.ZstdError as exc:
            raise CorruptFileError(ERR_TRUNCATED.format(
                path=self._path, what=f"not valid zstd data ({exc})")) from None
        return b"".join(out)

    def close(self) -> None:
        self._raw.close()
        super().close()


@dataclass
class ReadStats:
    """What reading the dumps kept and dropped."""

    lines: int = 0
    bad_lines: int = 0
    deleted_authors: int = 0
    bot_comments: int = 0
    removed_bodies: int = 0
    kept: int = 0
    bots: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bots"] = sorted(self.bots)[:200]
        out["bot_accounts"] = len(self.bots)
        return out


@contextlib.contextmanager
def _named_errors(path: Path) -> Iterator[None]:
    """A truncated or corrupt ``.gz``/``.bz2``/``.xz`` read as :class:`CorruptFileError`."""
    try:
        yield
    except CorruptFileError:
        raise
    except (EOFError, OSError, lzma.LZMAError) as exc:
        raise CorruptFileError(ERR_TRUNCATED.format(path=path, what=str(exc))) from None


def is_bot(author: str, extra: Iterable[str] = ()) -> bool:
    """Known bots, ``extra`` names and names such as ``RemindMeBot`` or ``bot_x``."""
    name = author.lower()
    return name in DEFAULT_BOTS or name in {e.lower() for e in extra} or bool(
        _BOT_NAME.search(author))


def _created(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def iter_comments(paths: Sequence[str | Path], *, drop_bots: bool = True,
                  extra_bots: Iterable[str] = (), stats: ReadStats | None = None,
                  max_lines: int | None = None) -> Iterator[tuple[str, str, int]]:
    """Stream ``(author, body, created_utc)`` of every kept comment of the dump files.

    Dropped: lines that are not JSON objects with string ``author`` and ``body``, deleted
    authors, bots (with ``drop_bots``) and deleted or removed bodies; ``stats`` counts them.
    With ``max_lines``, reading stops after that many non-empty lines (over all files).
    """
    stats = stats if stats is not None else ReadStats()
    extra = frozenset(e.lower() for e in extra_bots)
    for path in paths:
        with open_dump(path) as f, _named_errors(Path(path)):
            for line in f:
                if not line.strip():
                    continue
                if max_lines is not None and stats.lines >= max_lines:
                    return
                stats.lines += 1
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    stats.bad_lines += 1
                    continue
                if not isinstance(obj, dict):
                    stats.bad_lines += 1
                    continue
                author, body = obj.get("author"), obj.get("body")
                if not isinstance(author, str) or not isinstance(body, str):
                    stats.bad_lines += 1
                    continue
                if author in _DELETED_AUTHORS:
                    stats.deleted_authors += 1
                    continue
                if drop_bots and is_bot(author, extra):
                    stats.bot_comments += 1
                    stats.bots.add(author)
                    continue
                if body.strip() in _DELETED_BODIES:
                    stats.removed_bodies += 1
                    continue
                stats.kept += 1
                yield author, body, _created(obj.get("created_utc"))


def tokenize(text: str) -> list[str]:
    """Words of a post (see the module docstring); symbols become ``<unk>``, no ``<eos>``."""
    out: list[str] = []
    for raw in html.unescape(text).lower().replace("’", "'").split():
        core = raw.strip(_STRIP)
        if not core:
            continue  # punctuation only ("-", "...", "!!")
        if _WORD.fullmatch(core):
            out.append(core)
        else:
            out.append(UNK)
    return out


def resolve_files(data_dir: str | Path | None, patterns: Sequence[str]) -> list[Path]:
    """The dump files named by ``patterns`` (globs), relative to ``data_dir``; sorted."""
    base = Path(data_dir).expanduser() if data_dir else Path.cwd()
    found: dict[str, Path] = {}
    for pattern in patterns:
        full = Path(pattern).expanduser()
        full = full if full.is_absolute() else base / full
        matches = [Path(p) for p in glob.glob(str(full))]
        for p in matches:
            if p.is_file():
                found[str(p.resolve())] = p
    files = sorted(found.values(), key=lambda p: str(p))
    if not files:
        raise FileNotFoundError(ERR_NO_FILES.format(patterns=list(patterns),
                                                    data_dir=str(base)))
    return files


# --------------------------------------------------------------------------------- the data


class FederatedTextData:
    """Participants' token streams: train and test token ids per participant.

    Participant ``i``'s posts (chronological, each ending with ``<eos>``) are
    ``tokens[starts[i]:ends[i]]``; the first ``splits[i] - starts[i]`` tokens are training
    data, the rest test data. ``vocab_sizes[i]`` is the number of distinct in-vocabulary
    words (not ``<unk>``/``<eos>``) in all of their posts.
    """

    unk_id = UNK_ID
    eos_id = EOS_ID

    def __init__(self, *, tokens: np.ndarray, starts: np.ndarray, splits: np.ndarray,
                 ends: np.ndarray, vocab: Sequence[str], vocab_sizes: np.ndarray,
                 authors: Sequence[str] | None = None, meta: Mapping[str, Any] | None = None,
                 path: Path | None = None) -> None:
        self.tokens = tokens
        self.starts = np.asarray(starts, dtype=np.int64)
        self.splits = np.asarray(splits, dtype=np.int64)
        self.ends = np.asarray(ends, dtype=np.int64)
        self.vocab = list(vocab)
        self.vocab_sizes = np.asarray(vocab_sizes, dtype=np.int64)
        self.authors = list(authors) if authors is not None else None
        self.meta = dict(meta or {})
        self.path = path

    @property
    def num_participants(self) -> int:
        return len(self.starts)

    @property
    def num_tokens(self) -> int:
        """Size of the token vocabulary (words plus ``<unk>`` and ``<eos>``)."""
        return len(self.vocab)

    def train_tokens(self, i: int) -> torch.Tensor:
        """Participant ``i``'s training tokens as an int64 tensor (a copy)."""
        return torch.from_numpy(np.asarray(self.tokens[self.starts[i]:self.splits[i]],
                                           dtype=np.int64))

    def test_tokens(self, i: int) -> torch.Tensor:
        """Participant ``i``'s test tokens as an int64 tensor (a copy)."""
        return torch.from_numpy(np.asarray(self.tokens[self.splits[i]:self.ends[i]],
                                           dtype=np.int64))

    def train_sizes(self) -> np.ndarray:
        return self.splits - self.starts

    def test_sizes(self) -> np.ndarray:
        return self.ends - self.splits


def _input_signature(files: Sequence[Path]) -> list[dict[str, Any]]:
    out = []
    for p in files:
        st = p.stat()
        out.append({"name": p.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def cache_key(files: Sequence[Path], options: RedditOptions, seed: int) -> str:
    """Hash of what determines the preprocessed data."""
    blob = json.dumps({"version": CACHE_VERSION, "inputs": _input_signature(files),
                       "options": options.preprocessing_key(), "seed": seed},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _select_authors(counts: Mapping[str, int], options: RedditOptions, seed: int) -> list[str]:
    chosen = sorted(a for a, n in counts.items()
                    if options.min_posts <= n <= options.max_posts)
    if options.max_participants is not None and len(chosen) > options.max_participants:
        rng = data_generator(seed, "reddit_participants")
        keep = np.sort(rng.choice(len(chosen), size=options.max_participants, replace=False))
        chosen = [chosen[i] for i in keep]
    return chosen


def preprocess(files: Sequence[str | Path], options: RedditOptions, out_dir: str | Path, *,
               seed: int = 0, log: Any = None) -> Path:
    """Run the three passes over ``files`` and write the cache directory ``out_dir``.

    Written to a temporary sibling first and renamed at the end, so an interrupted run
    leaves no half-written cache. Returns ``out_dir``.
    """
    files = [Path(f) for f in files]
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + f".tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    try:
        # Pass 1: posts per author.
        stats1 = ReadStats()
        counts: Counter[str] = Counter()
        for author, _body, _utc in iter_comments(files, drop_bots=options.drop_bots,
                                                 extra_bots=options.extra_bots, stats=stats1,
                                                 max_lines=options.max_comments):
            counts[author] += 1
        authors = _select_authors(counts, options, seed)
        if not authors:
            raise ValueError(ERR_NO_PARTICIPANTS.format(
                min_posts=options.min_posts, max_posts=options.max_posts,
                files=[f.name for f in files], authors=len(counts)))
        n_authors_seen = len(counts)
        del counts
        say(f"reddit: pass 1 done, {len(authors)} participants of {n_authors_seen} authors "
            f"({stats1.kept} comments kept of {stats1.lines}, {time.perf_counter() - t0:.0f} s)")

        # Pass 2: tokenize the selected authors' posts to a temporary file, count words.
        index = {a: i for i, a in enumerate(authors)}
        post_author = array("i")
        post_time = array("q")
        post_len = array("i")  # tokens incl. <eos>
        posts_per_author = np.zeros(len(authors), dtype=np.int64)
        words: Counter[str] = Counter()
        empty_posts = 0
        raw_path = tmp / "posts.txt"
        with raw_path.open("w", encoding="utf-8") as raw:
            for author, body, utc in iter_comments(files, drop_bots=options.drop_bots,
                                                   extra_bots=options.extra_bots,
                                                   max_lines=options.max_comments):
                a = index.get(author)
                if a is None:
                    continue
                posts_per_author[a] += 1
                toks = tokenize(body)
                if not toks:
                    empty_posts += 1
                    continue
                words.update(toks)
                raw.write(" ".join(toks) + "\n")
                post_author.append(a)
                post_time.append(utc)
                post_len.append(len(toks) + 1)
        words.pop(UNK, None)
        ranked = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))
        vocab = [UNK, EOS] + [w for w, _ in ranked[:options.vocab_size]]
        n_words_seen = len(words)
        word_tokens = sum(words.values())
        kept_word_tokens = sum(c for _, c in ranked[:options.vocab_size])
        del words, ranked
        say(f"reddit: pass 2 done, {len(post_len)} posts, vocabulary {len(vocab)} "
            f"({time.perf_counter() - t0:.0f} s)")

        # Pass 3: chronological order per author, token ids into one flat array.
        pa = np.frombuffer(post_author, dtype=np.int32).astype(np.int64)
        pt = np.frombuffer(post_time, dtype=np.int64)
        pl = np.frombuffer(post_len, dtype=np.int32).astype(np.int64)
        n_posts = len(pl)
        order = np.lexsort((np.arange(n_posts), pt, pa))  # by author, time, file order
        dest = np.empty(n_posts, dtype=np.int64)
        lengths_sorted = pl[order]
        offsets_sorted = np.concatenate([[0], np.cumsum(lengths_sorted)[:-1]])
        dest[order] = offsets_sorted
        total = int(pl.sum())
        n_auth = len(authors)
        kept_posts = np.bincount(pa, minlength=n_auth)
        starts = np.zeros(n_auth, dtype=np.int64)
        ends = np.zeros(n_auth, dtype=np.int64)
        splits = np.zeros(n_auth, dtype=np.int64)
        first = np.searchsorted(pa[order], np.arange(n_auth), side="left")
        last = np.searchsorted(pa[order], np.arange(n_auth), side="right")
        for a in range(n_auth):
            lo, hi = int(first[a]), int(last[a])
            if lo == hi:
                starts[a] = ends[a] = splits[a] = offsets_sorted[lo] if lo < n_posts else total
                continue
            n = hi - lo
            n_test = int(round(options.test_fraction * n)) if n > 1 else 0
            n_test = min(max(n_test, 1 if options.test_fraction > 0 and n > 1 else 0), n - 1)
            starts[a] = offsets_sorted[lo]
            ends[a] = offsets_sorted[hi - 1] + lengths_sorted[hi - 1]
            splits[a] = offsets_sorted[hi - n_test] if n_test else ends[a]
        dtype = np.uint16 if len(vocab) <= 2**16 else np.uint32
        tokens = np.lib.format.open_memmap(tmp / "tokens.npy", mode="w+", dtype=dtype,
                                           shape=(total,))
        ids = {w: i for i, w in enumerate(vocab)}
        with raw_path.open("r", encoding="utf-8") as raw:
            for k, line in enumerate(raw):
                toks = [ids.get(w, UNK_ID) for w in line.split()]
                toks.append(EOS_ID)
                d = int(dest[k])
                tokens[d:d + len(toks)] = toks
        tokens.flush()
        raw_path.unlink()
        vocab_sizes = np.zeros(n_auth, dtype=np.int64)
        unk_total = 0
        for a in range(n_auth):
            part = np.asarray(tokens[starts[a]:ends[a]])
            uniq = np.unique(part)
            vocab_sizes[a] = int(np.count_nonzero(uniq > EOS_ID))
            unk_total += int(np.count_nonzero(part == UNK_ID))
        del tokens
        np.savez(tmp / "participants.npz", starts=starts, splits=splits, ends=ends,
                 vocab_sizes=vocab_sizes, posts=posts_per_author, kept_posts=kept_posts)
        (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
        (tmp / "authors.json").write_text(json.dumps(authors, ensure_ascii=False), "utf-8")
        meta = {
            "version": CACHE_VERSION,
            "inputs": _input_signature(files),
            "options": asdict(options),
            "seed": seed,
            "read": stats1.to_dict(),
            "authors_seen": n_authors_seen,
            "participants": n_auth,
            "posts": int(posts_per_author.sum()),
            "mean_posts_per_participant": float(posts_per_author.mean()),
            "empty_posts": empty_posts,
            "tokens": total,
            "train_tokens": int((splits - starts).sum()),
            "test_tokens": int((ends - splits).sum()),
            "unk_fraction": unk_total / total if total else None,
            "distinct_words_seen": n_words_seen,
            "vocab_size": len(vocab),
            "vocab_coverage": kept_word_tokens / word_tokens if word_tokens else None,
            "preprocessing_s": time.perf_counter() - t0,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True), "utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"reddit: preprocessed into {out_dir} ({time.perf_counter() - t0:.0f} s)")
    return out_dir


def load_cache(path: str | Path) -> FederatedTextData:
    """Open a cache directory written by :func:`preprocess` (tokens memory-mapped)."""
    path = Path(path)
    arrays = np.load(path / "participants.npz")
    return FederatedTextData(
        tokens=np.load(path / "tokens.npy", mmap_mode="r"),
        starts=arrays["starts"], splits=arrays["splits"], ends=arrays["ends"],
        vocab=json.loads((path / "vocab.json").read_text("utf-8")),
        vocab_sizes=arrays["vocab_sizes"],
        authors=json.loads((path / "authors.json").read_text("utf-8")),
        meta=json.loads((path / "meta.json").read_text("utf-8")),
        path=path,
    )


def load_reddit(data_dir: str | Path | None, options: Mapping[str, Any] | RedditOptions, *,
                seed: int = 0, log: Any = None) -> FederatedTextData:
    """The preprocessed Reddit data of ``data_dir`` (preprocessing once, then from cache)."""
    opts = options if isinstance(options, RedditOptions) else RedditOptions.from_mapping(
        options)
    files = resolve_files(data_dir, opts.files)
    if opts.cache_dir is not None:
        cache_root = Path(opts.cache_dir).expanduser()
    else:
        cache_root = (Path(data_dir).expanduser() if data_dir else Path.cwd()) / \
            ".disparate-cache"
    target = cache_root / f"reddit-{cache_key(files, opts, seed)}"
    if not (target / "meta.json").is_file():
        cache_root.mkdir(parents=True, exist_ok=True)
        preprocess(files, opts, target, seed=seed, log=log)
    elif log is not None:
        log(f"reddit: using cached preprocessing {target}")
    return load_cache(target)
