"""One seed tree: every random choice of a run draws from a named stream of its own.

A stream is the child ``numpy.random.SeedSequence(root, spawn_key=(index, *key))`` of a root,
where ``index`` is the stream's position in :data:`STREAMS` and ``key`` refines it (an epoch,
a round, a participant). Distinct names or keys give independent streams, whatever the root,
so no two consumers ever read the same random numbers::

    stream           consumer                                     key
    model_init       model initialisation (centralised and FL)    -
    augmentation     per-batch image augmentation                 epoch
    sampling         DP-SGD batch membership                      epoch
    noise            DP-SGD Gaussian noise                        -
    fl_participants  DP-FedAvg participants of a round            round
    fl_local         a participant's local training               round, participant
    fl_noise         DP-FedAvg Gaussian noise                     round
    fl_eval_subset   the fixed subset of interim evaluations     -

The data -- random splits, which examples ``data.reduce`` and ``data.subsample`` keep, the
samples of a dataset -- is drawn from the streams of :data:`DATA_STREAMS`, rooted in
``data.seed`` (:func:`data_generator`)::

    stream               consumer                                          key
    data_reduce          data.reduce and the stratified data.subsample     group
    data_subsample       the unstratified subsample                        -
    data_split           the test split of image-folder and table          -
    faces_split          which faces are drawn into train and test         -
    inat_draw            which iNaturalist images of a class are drawn     crc32("split/class")
    tweets_sample        which tweets of a dialect and class are drawn     group, class
    tweets_cues          which tweets get a cue token                      split (0 train, 1 test)
    glove_rows           embedding rows of words without a GloVe vector    -
    reddit_participants  the max_participants subset of Reddit authors     -

Roots. The public root is ``training.seed`` (it is written to ``config.yaml`` and
``results.json``). The streams of :data:`SECRET_STREAMS` -- the ones the DP guarantee needs
hidden: which examples (or participants) were sampled, and the noise -- are rooted instead in
a 128-bit secret drawn from the operating system (:func:`secrets.randbits`) when the run is
differentially private, unless ``privacy.reproducible_noise`` is set. The secret is kept only
in the checkpoint (so that a resumed run draws what the uninterrupted one would have), never
in a file that is released with the results.

Entropy. torch's CPU ``manual_seed`` keeps only 32 bits of its seed, so a secret stream's
torch generator is never seeded that way: its whole Mersenne Twister state (624 words) is drawn
from the stream's ``SeedSequence``, which carries the secret's 128 bits
(:func:`generator_from_sequence`). On CUDA the generator (Philox) takes a 64-bit seed, so a
secret stream there has 64 bits. The public streams keep ``manual_seed`` (their seed is public).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np
import torch

from disparate.validation import check_seed

__all__ = [
    "DATA_STREAMS",
    "MT_WORDS",
    "NOISE_REPRODUCIBLE",
    "NOISE_SECRET",
    "SECRET_BITS",
    "SECRET_STREAMS",
    "STREAMS",
    "SeedTree",
    "data_generator",
    "generator_from_sequence",
    "mt_generator",
    "new_secret",
    "secret_generator",
    "stream_seed",
    "torch_generator",
]

STREAMS: tuple[str, ...] = (
    "model_init",
    "augmentation",
    "sampling",
    "noise",
    "fl_participants",
    "fl_local",
    "fl_noise",
    "fl_eval_subset",
)
#: The data streams: name -> the words that follow ``data.seed`` in the entropy of its
#: generator, ``numpy.random.default_rng([seed, *words, *key])``. The words are those the
#: dataset modules used before the tree, so the presets keep the examples they selected;
#: ``data_reduce`` has none (its key, a group index, comes right after the seed). Numpy pads
#: entropy with zeros, so ``[seed]`` and ``[seed, 0]`` are one stream: no other stream may
#: lack a word, and every group index below 0x1A7 (423 groups) is distinct from every word.
DATA_STREAMS: dict[str, tuple[int, ...]] = {
    "data_reduce": (),
    "data_subsample": (0xFFFF_FFFF,),
    "data_split": (0x5B117,),
    "faces_split": (0xFACE5,),
    "inat_draw": (0x1A7,),
    "tweets_sample": (0x7EE7,),
    "tweets_cues": (0xC0E,),
    "glove_rows": (0x61_07E,),
    "reddit_participants": (0x2EDD17,),
}

#: The streams rooted in the run's secret when it is differentially private.
SECRET_STREAMS: frozenset[str] = frozenset({"sampling", "noise", "fl_participants", "fl_noise"})
SECRET_BITS = 128

#: How the noise was seeded, in the words of every privacy statement.
NOISE_SECRET = ("noise and sampling seeded from the operating system's entropy: secret (kept "
                "only in checkpoint.pt, which must not be released)")
MT_WORDS = 624  # 32-bit words of a Mersenne Twister state
# torch's CPU generator state: seed u64, left i32, seeded i32, next u64, then 624 u64 words
_MT_OFFSET = 24
_TEMPLATE = torch.Generator().manual_seed(0).get_state().numpy()

NOISE_REPRODUCIBLE = ("noise seeded from the recorded seed: reproducible, not private "
                      "against anyone who has it")


def _stream_index(stream: str) -> int:
    try:
        return STREAMS.index(stream)
    except ValueError:
        raise ValueError(
            f"stream={stream!r}: expected one of {', '.join(map(repr, STREAMS))}") from None


def _sequence(root: int, stream: str, *key: int) -> np.random.SeedSequence:
    root = check_seed(root, "root")
    return np.random.SeedSequence(root, spawn_key=(_stream_index(stream), *map(int, key)))


def stream_seed(root: int, stream: str, *key: int) -> int:
    """A 64-bit seed of ``stream`` (refined by ``key``, e.g. the epoch) under ``root``."""
    hi, lo = _sequence(root, stream, *key).generate_state(2, dtype=np.uint32)
    return int(hi) << 32 | int(lo)


def mt_generator(words: np.ndarray) -> torch.Generator:
    """A CPU generator whose Mersenne Twister state is ``words`` (624 uint32)."""
    state = _TEMPLATE.copy()
    words = words.astype("<u8")
    words[0] = 0x80000000  # only its top bit is used; set, the state is never all zero
    state[_MT_OFFSET:_MT_OFFSET + 8 * MT_WORDS] = words.view(np.uint8)
    generator = torch.Generator()
    generator.set_state(torch.from_numpy(state))
    return generator


def generator_from_sequence(seq: np.random.SeedSequence,
                            device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` keeping all of ``seq``'s entropy: on the CPU its whole
    Mersenne Twister state is drawn from ``seq``; elsewhere a 64-bit seed is."""
    if torch.device(device).type == "cpu":
        return mt_generator(seq.generate_state(MT_WORDS, dtype=np.uint32))
    hi, lo = seq.generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(hi) << 32 | int(lo))


def torch_generator(root: int, stream: str, *key: int, device: torch.device | str = "cpu",
                    secret: bool = False) -> torch.Generator:
    """A torch generator on ``device`` of ``stream`` under ``root``: seeded by
    :func:`stream_seed` (32 bits kept on the CPU), or, ``secret``, with all of the root's
    entropy (:func:`generator_from_sequence`)."""
    if secret:
        return generator_from_sequence(_sequence(root, stream, *key), device)
    return torch.Generator(device=device).manual_seed(stream_seed(root, stream, *key))


def secret_generator(device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` from a fresh :data:`SECRET_BITS`-bit secret of the OS."""
    return generator_from_sequence(np.random.SeedSequence(new_secret()), device)


def data_generator(seed: int, stream: str, *key: int) -> np.random.Generator:
    """The numpy generator of data stream ``stream`` (refined by ``key``) under ``data.seed``."""
    seed = check_seed(seed)
    if stream not in DATA_STREAMS:
        raise ValueError(f"stream={stream!r}: expected one of "
                         f"{', '.join(map(repr, DATA_STREAMS))}")
    return np.random.default_rng([seed, *DATA_STREAMS[stream], *map(int, key)])


def new_secret() -> int:
    """A fresh secret root from the operating system's entropy."""
    return secrets.randbits(SECRET_BITS)


@dataclass(frozen=True)
class SeedTree:
    """The roots of one run: the public seed and, for a secret run, the secret root.

    ``secret=None``: every stream is rooted in ``seed`` (reproducible). Never write
    ``secret`` anywhere but the checkpoint; ``repr`` hides it.
    """

    seed: int
    secret: int | None = None

    def __repr__(self) -> str:
        hidden = "None" if self.secret is None else "<hidden>"
        return f"SeedTree(seed={self.seed!r}, secret={hidden})"

    @classmethod
    def for_run(cls, seed: int, *, private: bool, reproducible: bool,
                saved_secret: int | None = None) -> SeedTree:
        """The tree of a run: secret (fresh, or ``saved_secret`` on resume) when ``private``
        and not ``reproducible``, else rooted in ``seed`` alone."""
        if not private or reproducible:
            return cls(seed)
        return cls(seed, new_secret() if saved_secret is None else int(saved_secret))

    @property
    def is_secret(self) -> bool:
        """True when the streams of :data:`SECRET_STREAMS` are rooted in the secret."""
        return self.secret is not None

    def root(self, stream: str) -> int:
        """The root that ``stream`` is drawn under."""
        _stream_index(stream)
        if self.secret is not None and stream in SECRET_STREAMS:
            return self.secret
        return self.seed

    def seed_of(self, stream: str, *key: int) -> int:
        """The 64-bit seed of ``stream`` at ``key``."""
        return stream_seed(self.root(stream), stream, *key)

    def generator(self, stream: str, *key: int,
                  device: torch.device | str = "cpu") -> torch.Generator:
        """A torch generator of ``stream`` at ``key``; a stream rooted in the secret keeps all
        of its entropy (see :func:`torch_generator`)."""
        secret = self.secret is not None and stream in SECRET_STREAMS
        return torch_generator(self.root(stream), stream, *key, device=device, secret=secret)
