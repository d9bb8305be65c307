"""GloVe word vectors from the standard text format, and embedding initialisation.

Format (Pennington et al., ``glove.6B.*d.txt``, ``glove.42B.300d.txt``,
``glove.840B.300d.txt``, ``glove.twitter.27B.*d.txt``): one word per line, then its ``d``
values, separated by single spaces. Some tokens of the 840B file contain spaces themselves
(``". . ."``, ``"at name@domain.com"``), so a line's vector is its **last d fields** and the
word is everything before them. The file may be plain text, ``.gz``, or the published
``.zip`` (its one ``.txt`` member is read). A first line of exactly two integers (the
``count dim`` header of word2vec/fastText text files) is skipped. Lines are read one at a
time and only the wanted words' values are parsed, so a 5 GB file never sits in memory.

:func:`embedding_matrix` maps a vocabulary to a (V, d) float32 matrix: row i is the vector of
word i. Words without a vector (and the special tokens other than padding) are drawn from
``N(0, std^2)`` with ``std`` the standard deviation of all values of the vectors that were
found (the scale of GloVe itself), from a generator seeded by ``seed``; the padding row is 0.
With ``lowercase_fallback`` a word missing from a cased file (840B) takes the vector of the
first entry whose lowercase equals it (GloVe files are sorted by frequency, so the most
frequent casing); an exact entry always wins.

The text datasets (``disparate.data.tweets``) build their vocabulary and, when asked, its
GloVe matrix, and carry it as an :class:`EmbeddingInit`; they hand it to the model built on
them through ``GroupedDataset.model_inputs()`` (``model.options.embeddings: dataset`` of
``text-lstm``, see ``disparate.models.text``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from disparate.randomness import data_generator

__all__ = [
    "CACHE_VERSION",
    "EmbeddingInit",
    "GloveFormatError",
    "GloveInit",
    "GloveVectors",
    "embedding_matrix",
    "glove_embedding_matrix",
    "iter_lines",
    "read_glove",
]

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
#: Std used when no word of the vocabulary has a vector (so the GloVe scale is unknown).
FALLBACK_STD = 0.4


class GloveFormatError(ValueError):
    """A GloVe file that does not have the text format described in the module docstring."""


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@contextmanager
def _open_binary(path: Path) -> Iterator[IO[bytes]]:
    name = path.name.lower()
    if name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            yield f
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if not m.endswith("/")]
            texts = [m for m in members if m.lower().endswith(".txt")] or members
            if len(texts) != 1:
                raise GloveFormatError(
                    f"{path}: expected one .txt member in the zip archive, found {texts}")
            with zf.open(texts[0]) as f:
                yield f
    else:
        with path.open("rb") as f:
            yield f


def iter_lines(path: str | Path) -> Iterator[str]:
    """The lines of a plain, ``.gz`` or ``.zip`` text file, decoded as UTF-8 (errors
    replaced), without their line ends; one at a time."""
    path = Path(path)
    with _open_binary(path) as f:
        for raw in f:
            yield raw.decode("utf-8", errors="replace").rstrip("\r\n")


@dataclass
class GloveVectors:
    """What :func:`read_glove` found: word -> vector (float32, d values), and counts."""

    dim: int
    vectors: dict[str, np.ndarray]
    lines: int = 0
    malformed: int = 0
    lowercase_matches: int = 0


def _is_header(line: str) -> bool:
    parts = line.split()
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def read_glove(
    path: str | Path,
    words: Iterable[str] | None = None,
    *,
    dim: int | None = None,
    lowercase_fallback: bool = True,
) -> GloveVectors:
    """Read the vectors of ``words`` (all words if ``None``) from a GloVe text file.

    Args:
        path: The file (plain, ``.gz`` or ``.zip``).
        words: The words to keep; every other line is skipped without parsing its values.
        dim: The vector size d; ``None`` infers it from the first line (fields - 1).
        lowercase_fallback: For a wanted word without an exact entry, use the first entry
            whose lowercase equals it (an exact entry found later replaces it).

    Malformed wanted lines (too few fields, a value that is not a number) are counted and
    skipped. A file whose first line is not ``word v1 ... vd`` (with ``d = dim`` if given), or
    that has no line, or a wanted vector with a non-finite value, raises
    :class:`GloveFormatError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GloVe file {str(path)!r} does not exist")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ValueError(f"dim={dim!r}: expected an int >= 1")
    wanted = None if words is None else set(words)
    lowered = (set() if wanted is None or not lowercase_fallback
               else {w for w in wanted if w == w.lower()})
    spaced = wanted is not None and any(" " in w for w in wanted)

    def is_wanted(word: str) -> bool:
        return wanted is None or word in wanted or (bool(lowered) and word.lower() in lowered)

    exact: set[str] = set()
    out = GloveVectors(dim=dim or 0, vectors={})
    checked = False
    for i, line in enumerate(iter_lines(path)):
        out.lines += 1
        line = line.rstrip(" ")
        if not line.strip() or (i == 0 and _is_header(line)):
            continue
        if not checked:  # the first data line must look like 'word v1 ... vd'
            fields = line.split(" ")
            if out.dim == 0:
                out.dim = len(fields) - 1
            tail = line.rsplit(" ", out.dim)[1:] if out.dim >= 1 else []
            try:
                ok = len(tail) == out.dim >= 1 and bool(np.isfinite(
                    np.asarray(tail, dtype=np.float64)).all())
            except ValueError:
                ok = False
            if ok and dim is not None and len(fields) - 1 != dim:
                raise GloveFormatError(
                    f"{path}: line {i + 1} has {len(fields) - 1} values after the word: "
                    f"expected dim={dim}; set the dimension to {len(fields) - 1} "
                    "(e.g. data.options.glove_dim) or use a file of that size")
            if not ok:
                found = (f" (it has {len(fields) - 1} fields after the word: expected "
                         f"dim={dim})" if dim is not None else "")
                raise GloveFormatError(
                    f"{path}: line {i + 1} is not 'word v1 ... v{out.dim or 'd'}' (values "
                    f"separated by single spaces){found}: {line[:80]!r}")
            checked = True
        head, _, rest = line.partition(" ")
        if is_wanted(head):
            values = rest.split(" ")
            if len(values) != out.dim:  # a token with spaces: the last d fields are values
                fields = line.rsplit(" ", out.dim)
                if len(fields) != out.dim + 1 or not fields[0]:
                    out.malformed += 1
                    continue
                head, values = fields[0], fields[1:]
                if not is_wanted(head):
                    continue
        elif spaced:
            fields = line.rsplit(" ", out.dim)
            if len(fields) != out.dim + 1 or not is_wanted(fields[0]):
                continue
            head, values = fields[0], fields[1:]
        else:
            continue
        try:
            with np.errstate(over="ignore"):  # 1e39 becomes inf, refused below
                vec = np.asarray(values, dtype=np.float32)
        except ValueError:
            out.malformed += 1
            continue
        if not np.isfinite(vec).all():
            raise GloveFormatError(
                f"{path}: line {i + 1}: the vector of {head!r} has a non-finite value (nan, "
                "inf, or beyond float32 such as 1e39); the file is corrupt: download it again")
        if wanted is None or head in wanted:
            if head not in exact:
                if head in out.vectors:
                    out.lowercase_matches -= 1  # an exact entry replaces a lowercase match
                out.vectors[head] = vec
                exact.add(head)
        if lowered:
            low = head.lower()
            if low != head and low in lowered and low not in out.vectors:
                out.vectors[low] = vec
                out.lowercase_matches += 1
    if not checked:
        raise GloveFormatError(f"{path}: no vectors ({out.lines} lines)")
    return out


# --------------------------------------------------------------------------------------------
# Embedding initialisation
# --------------------------------------------------------------------------------------------


def embedding_matrix(
    vocabulary: Sequence[str],
    vectors: Mapping[str, np.ndarray],
    dim: int,
    *,
    seed: int,
    padding_idx: int | None = 0,
    std: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(V, dim) float32 rows for ``vocabulary``, the boolean ``found`` mask, and the std used.

    Row i is ``vectors[vocabulary[i]]`` when present; other rows ~ ``N(0, std^2)`` with
    ``std`` (default) the std of all values of the found vectors (``FALLBACK_STD`` if none
    was found, with a warning); the ``padding_idx`` row is 0.
    """
    v = len(vocabulary)
    found = np.array([w in vectors for w in vocabulary], dtype=bool)
    if padding_idx is not None:
        if not 0 <= padding_idx < v:
            raise ValueError(f"padding_idx={padding_idx}: expected 0 <= padding_idx < {v}")
        found[padding_idx] = False
    if std is None:
        if found.any():
            values = np.stack([vectors[vocabulary[i]] for i in np.flatnonzero(found)])
            std = float(values.astype(np.float64).std())
        else:
            warnings.warn(
                f"no word of the {v}-word vocabulary has a vector; initialising every row "
                f"from N(0, {FALLBACK_STD}^2)", stacklevel=2)
            std = FALLBACK_STD
    rng = data_generator(seed, "glove_rows")
    matrix = (rng.standard_normal((v, dim)) * std).astype(np.float32)
    for i in np.flatnonzero(found):
        vec = vectors[vocabulary[i]]
        if vec.shape != (dim,):
            raise ValueError(
                f"vector of {vocabulary[i]!r} has shape {vec.shape}: expected ({dim},)")
        matrix[i] = vec
    if padding_idx is not None:
        matrix[padding_idx] = 0.0
    return matrix, found, float(std)


@dataclass(frozen=True)
class GloveInit:
    """An embedding matrix for a vocabulary from a GloVe file, and how it was made."""

    matrix: np.ndarray  # (V, d) float32
    found: np.ndarray  # (V,) bool: the row is a GloVe vector
    std: float
    source: str
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def coverage(self) -> float:
        """Fraction of the vocabulary's rows that are GloVe vectors."""
        return float(self.found.mean()) if self.found.size else 0.0


def _file_identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def glove_embedding_matrix(
    path: str | Path,
    vocabulary: Sequence[str],
    *,
    dim: int = 300,
    seed: int = 0,
    padding_idx: int | None = 0,
    lowercase_fallback: bool = True,
    cache_dir: str | Path | None = None,
) -> GloveInit:
    """:func:`read_glove` then :func:`embedding_matrix`; cached in ``cache_dir`` if given
    (``glove-<hash>.npz``, keyed by the file's path, size and mtime, the vocabulary, d, the
    seed and the options), so the multi-gigabyte file is read once per vocabulary."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GloVe file {str(path)!r} does not exist")
    words = list(vocabulary)
    key_data = {"version": CACHE_VERSION, "file": _file_identity(path), "dim": dim,
                "seed": int(seed), "padding_idx": padding_idx,
                "lowercase_fallback": bool(lowercase_fallback),
                "vocabulary": hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
    cache_file = Path(cache_dir) / f"glove-{key}.npz" if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                stats = json.loads(str(z["stats"]))
                return GloveInit(matrix=z["matrix"], found=z["found"], std=float(z["std"]),
                                 source=str(path), stats=stats)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("glove: ignoring unreadable cache %s (%s)", cache_file, exc)
    read = read_glove(path, words, dim=dim, lowercase_fallback=lowercase_fallback)
    if read.dim != dim:
        raise GloveFormatError(f"{path}: vectors have {read.dim} values: expected dim={dim}")
    matrix, found, std = embedding_matrix(words, read.vectors, dim, seed=seed,
                                          padding_idx=padding_idx)
    stats = {"lines": read.lines, "malformed": read.malformed, "found": int(found.sum()),
             "vocabulary": len(words), "lowercase_matches": read.lowercase_matches,
             "std": std}
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(cache_file.name + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, matrix=matrix, found=found, std=np.float64(std),
                     stats=np.array(json.dumps(stats)))
            os.replace(tmp, cache_file)
        except OSError as exc:
            logger.warning("glove: could not write the cache %s (%s)", cache_file, exc)
    return GloveInit(matrix=matrix, found=found, std=std, source=str(path), stats=stats)


# --------------------------------------------------------------------------------------------
# What a text dataset hands to the model built on it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingInit:
    """A text dataset's vocabulary (token id i is ``vocabulary[i]``) and, if it was built
    with pre-trained vectors, their (V, d) float32 matrix; ``source`` says where from."""

    vocabulary: tuple[str, ...]
    vectors: np.ndarray | None
    padding_idx: int
    source: str

    def __post_init__(self) -> None:
        if self.vectors is not None and (self.vectors.ndim != 2
                                         or self.vectors.shape[0] != len(self.vocabulary)):
            raise ValueError(
                f"vectors have shape {self.vectors.shape}: expected "
                f"({len(self.vocabulary)}, d), one row per vocabulary entry")

    @property
    def fingerprint(self) -> str:
        """Short hash of the vocabulary (which token has which id)."""
        text = "\n".join(self.vocabulary).encode("utf-8")
        return hashlib.sha256(text).hexdigest()[:12]

    @property
    def dim(self) -> int | None:
        return None if self.vectors is None else int(self.vectors.shape[1])
