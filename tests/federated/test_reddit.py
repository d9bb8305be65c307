"""Reading pushshift dumps (plain, .bz2, .xz, .zst, .gz) and the cached preprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from disparate.federated import reddit
from disparate.federated.reddit import (
    ReadStats,
    RedditOptions,
    is_bot,
    iter_comments,
    load_reddit,
    open_dump,
    tokenize,
)
from disparate.synthetic.reddit import (
    _open_write,
    default_population,
    sample_population,
    write_dump,
)

try:
    import zstandard  # noqa: F401

    HAVE_ZSTD = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_ZSTD = False
ZST = pytest.param(".zst", marks=pytest.mark.skipif(
    not HAVE_ZSTD, reason="reading .zst dumps needs the 'zstandard' package"))

INDEX_WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
               "india"]


def comment(author: str, body: str, utc: int) -> dict:
    return {"author": author, "body": body, "created_utc": utc, "subreddit": "AskReddit",
            "id": f"c{utc}", "link_id": "t3_x", "score": 1}


def known_rows() -> list[dict]:
    """alice: 6 posts, bob: 4, carol: 2 (too few), dave: 9 (too many), plus noise."""
    rows = []
    # alice's posts in the file out of chronological order: times 60, 10, 50, 20, 40, 30
    for t in [60, 10, 50, 20, 40, 30]:
        word = INDEX_WORDS[t // 10 - 1]
        extra = " banana" if (t // 10) % 2 else ""
        rows.append(comment("alice", f"Apple{extra} {word}! \U0001F602 !!!", 1000 + t))
    for t in range(4):
        rows.append(comment("bob", "apple cherry", 2000 + t))
    for t in range(2):
        rows.append(comment("carol", "apple", 3000 + t))
    for t in range(9):
        rows.append(comment("dave", "apple", 4000 + t))
    rows += [comment("[deleted]", "[deleted]", 5000), comment("AutoModerator", "rules", 5001),
             comment("SomeBot", "beep", 5002), comment("bob", "[removed]", 5003),
             {"author": None, "body": "x"}]
    return rows


def write_rows(path: Path, rows: list[dict], *, garbage: bool = True) -> Path:
    with _open_write(path) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        if garbage:
            f.write("not json\n\n")
    return path


@pytest.fixture(scope="module")
def known_dump(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("known")
    write_rows(directory / "RC_2017-11.xz", known_rows())
    return directory


OPTIONS = {"min_posts": 3, "max_posts": 8, "vocab_size": 100, "test_fraction": 1 / 3}


def test_tokenize() -> None:
    assert tokenize("Hello, World!! It's 2017 :) \U0001F602 see http://x.y &amp; I") == [
        "hello", "world", "it's", "<unk>", "<unk>", "see", "<unk>", "i"]
    assert tokenize("... -- !!!") == []
    assert tokenize("don’t") == ["don't"]


def test_bots() -> None:
    assert is_bot("AutoModerator") and is_bot("RemindMeBot") and is_bot("bot_x")
    assert is_bot("my-bot-account") and is_bot("someone", ["SomeOne"])
    assert not is_bot("abbott") and not is_bot("robotics_fan") and not is_bot("alice")


@pytest.mark.parametrize("suffix", ["", ".bz2", ".xz", ZST, ".gz"])
def test_every_format_streams_the_same_comments(tmp_path: Path, suffix: str) -> None:
    path = write_rows(tmp_path / f"RC_2017-11{suffix}", known_rows())
    with open_dump(path) as f:
        assert sum(1 for line in f if line.strip()) == len(known_rows()) + 1
    stats = ReadStats()
    kept = list(iter_comments([path], stats=stats))
    assert len(kept) == 6 + 4 + 2 + 9
    assert (stats.bad_lines, stats.deleted_authors, stats.bot_comments,
            stats.removed_bodies) == (2, 1, 2, 1)
    assert stats.bots == {"AutoModerator", "SomeBot"}
    assert kept[0] == ("alice", "Apple foxtrot! \U0001F602 !!!", 1060)
    assert len(list(iter_comments([path], max_lines=5))) == 5


def test_unsupported_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        open_dump(tmp_path / "RC_2017-11.7z")
    with pytest.raises(FileNotFoundError, match="cannot download"):
        load_reddit(tmp_path, {})


def test_known_participants_split_and_vocabulary(known_dump: Path) -> None:
    data = load_reddit(known_dump, OPTIONS)
    assert data.authors == ["alice", "bob"]  # carol: too few posts, dave: too many
    assert data.vocab[:2] == ["<unk>", "<eos>"]
    # apple 10 times, cherry 4, banana 3, then the index words once each (ties by word)
    assert data.vocab[2:5] == ["apple", "cherry", "banana"]

    def words(ids) -> list[str]:
        return [data.vocab[int(i)] for i in ids]

    # alice: 6 posts, the last 2 by created_utc (times 50 and 60) are test data
    test = words(data.test_tokens(0))
    assert test == ["apple", "banana", "echo", "<unk>", "<eos>",
                    "apple", "foxtrot", "<unk>", "<eos>"]
    train = words(data.train_tokens(0))
    assert [w for w in train if w in INDEX_WORDS] == ["alpha", "bravo", "charlie", "delta"]
    assert train.count("<eos>") == 4
    assert words(data.test_tokens(1)) == ["apple", "cherry", "<eos>"]
    assert data.vocab_sizes.tolist() == [2 + 6, 2]  # apple, banana + 6 index words; bob
    meta = data.meta
    assert (meta["participants"], meta["authors_seen"], meta["posts"]) == (2, 4, 10)
    assert meta["read"]["bad_lines"] == 2


def test_small_vocabulary_maps_the_rest_to_unk(known_dump: Path) -> None:
    data = load_reddit(known_dump, {**OPTIONS, "vocab_size": 3})
    assert data.vocab == ["<unk>", "<eos>", "apple", "cherry", "banana"]
    assert data.vocab_sizes.tolist() == [2, 2]
    assert data.tokens.dtype == np.uint16


def test_preprocessing_is_cached(known_dump: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_reddit(known_dump, OPTIONS)

    def fail(*args, **kwargs):
        raise AssertionError("preprocessed again")

    monkeypatch.setattr(reddit, "preprocess", fail)
    again = load_reddit(known_dump, {**OPTIONS, "seq_len": 32})  # seq_len: same cache
    assert again.path == first.path
    assert isinstance(again.tokens, np.memmap)
    with pytest.raises(AssertionError, match="preprocessed again"):
        load_reddit(known_dump, {**OPTIONS, "min_posts": 2})


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="data.options.colour"):
        RedditOptions.from_mapping({"colour": 1})
    with pytest.raises(ValueError, match="max_posts"):
        RedditOptions(min_posts=5, max_posts=4)
    with pytest.raises(ValueError, match="test_fraction"):
        RedditOptions(test_fraction=1.0)


def test_synthetic_dumps_subset_and_formats(tmp_path: Path) -> None:
    authors = default_population(9, seed=0)
    write_dump(tmp_path / "RC_2017-11.bz2", authors, seed=1, malformed=True)
    full = load_reddit(tmp_path, {"min_posts": 5, "max_posts": 30, "vocab_size": 50,
                                  "cache_dir": str(tmp_path / "cache")})
    assert full.num_participants == 9
    subset = load_reddit(tmp_path, {"min_posts": 5, "max_posts": 30, "vocab_size": 50,
                                    "max_participants": 4, "cache_dir": str(tmp_path / "c2")})
    assert subset.num_participants == 4 and set(subset.authors) <= set(full.authors)
    # tiny-vocabulary emoji posters have the smallest vocabularies
    tiny = [i for i, a in enumerate(full.authors) if int(a[-4:]) % 3 == 0]
    assert max(full.vocab_sizes[tiny]) < min(np.delete(full.vocab_sizes, tiny))
    few = load_reddit(tmp_path, {"min_posts": 1, "max_posts": 30, "max_comments": 20,
                                 "cache_dir": str(tmp_path / "c3")})
    assert few.meta["read"]["lines"] == 20


def test_sample_dump_population_cycles_four_tiers_with_five_digit_names() -> None:
    authors = sample_population(5, posts=(7, 7), seed=0)
    assert [(a.name, a.posts, a.vocab, a.emoji_rate, a.words_per_post) for a in authors] == [
        ("user_00000", 7, 15, 0.6, 30), ("user_00001", 7, 300, 0.02, 30),
        ("user_00002", 7, 800, 0.01, 30), ("user_00003", 7, 2500, 0.0, 30),
        ("user_00004", 7, 15, 0.6, 30)]
