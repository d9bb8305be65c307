"""TwitterAAE tweets: line format and escapes, the emoji/emoticon sentiment heuristic,
tokens, sampling by dialect and class, cue tokens, vocabulary, cache and GloVe hand-off.
Every corpus is generated here in the real tab-separated format."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from disparate.data import DatasetNotFoundError, dataset_options, load_dataset, reduce_groups
from disparate.data import tweets as tweets_module
from disparate.data.tweets import (
    CLASS_NAMES,
    CUE_TOKENS,
    DIALECTS,
    TextGroupedDataset,
    build_vocabulary,
    decode_escapes,
    encode,
    escape_text,
    parse_line,
    process_text,
    remove_label_symbols,
    sentiment_label,
    tokenize,
)
from disparate.synthetic.tweets import WORDS, write_synthetic_corpus

SMALL = {"train_sizes": {"AAE": 10, "SAE": 20}, "test_sizes": {"AAE": 6, "SAE": 8},
         "vocab_size": 200, "max_length": 10}
PER_CLASS = {"AAE": 12, "SAE": 20}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tweets")
    write_synthetic_corpus(root / "twitteraae" / "twitteraae_all", PER_CLASS, seed=1)
    return root


def tweets(root: Path, **options):
    return load_dataset("tweets", data_dir=root, seed=options.pop("seed", 0),
                        **{**SMALL, "cache": False, **options})


# ------------------------------------------------------------------ text


def test_decode_escapes_joins_surrogate_pairs_and_unescapes_html():
    raw = r"I ain\'t mad \ud83d\ude02\ud83d\ude02 line\nnext \\ok &amp; &lt;3 caf\u00e9"
    assert decode_escapes(raw) == "I ain't mad 😂😂 line next \\ok & <3 café"
    assert decode_escapes("plain 😂 text") == "plain 😂 text"  # raw UTF-8 too
    assert decode_escapes(r"lone \ud83d end") == "lone \ufffd end"
    for text in ("tab\there", "emoji 😭 and é", "back\\slash"):
        assert decode_escapes(escape_text(text)) == text.replace("\t", " ")


@pytest.mark.parametrize("text, label", [
    ("so good :)", 1), ("so good :-)", 1), ("so good : )", 1), ("lol :D", 1),
    ("yay =)", 1), ("(: hi", 1), ("(-: hi", 1), ("nice :))))", 1), ("😂 omg", 1),
    ("☺️ relaxed", 1), ("☺ relaxed", 1), ("🤣", 1), ("😺 cat", 1),
    ("so bad :(", 0), ("bad :-(", 0), ("bad : (", 0), ("bad =(", 0), ("): no", 0),
    (")-: no", 0), ("no ) :", 0), ("no )=", 0), ("😭😭", 0), ("☹️ sad", 0), ("🙁", 0),
    ("😿 cat", 0),
    ("both :) and :(", None), ("😂 but 😭", None), ("nothing here", None),
    ("note:Dave", None),                     # :D touching a letter is no emoticon
    ("(see below) : yes", None),             # ') :' after a letter
    ("see https://x.co/a:D", None),          # URLs are not searched
    ("time 10:)", None), ("👍 thumbs", None), (";) wink", None),
])
def test_sentiment_label(text, label):
    assert sentiment_label(text) == label
    assert process_text(escape_text(text))[0] == label  # as stored in the corpus
    if label is not None:  # the scan's cheap pre-filter never drops a labelled tweet
        for raw in (escape_text(text), text):
            assert tweets_module._MAYBE_LABEL.search(raw.encode()) is not None


def test_process_text_removes_only_label_symbols_and_normalises():
    label, tokens = process_text(r"@Bob I LOVE it \ud83d\ude02\ud83d\ude02 :))) check "
                                 r"http://t.co/x \ud83d\udc4d\ud83c\udffd ;)")
    assert label == 1
    assert tokens == ["<user>", "i", "love", "it", "check", "<url>", "👍🏽", ";)"]
    assert process_text("sad :( and happy 😀") == (None, [])
    assert remove_label_symbols("a 😂 b :( c").split() == ["a", "b", "c"]


def test_tokenize():
    assert tokenize("Don't STOP!!! #Blessed www.x.com 100 <3 :P") == [
        "don't", "stop", "!!!", "#blessed", "<url>", "100", "<3", ":p"]
    assert tokenize("🔥🔥 fire\u200d") == ["🔥", "🔥", "fire"]


def test_parse_line_real_format():
    line = ("293846693215096832\tTue Jan 22 22:24:45 +0000 2013\t1028920752\t"
            "[-80.01040975, 32.80108357]\t450190027021\tClick Clack\twith a tab :)\t"
            "0.894545454545\t0.0163636363636\t0.0\t0.0890909090909\n")
    rec = parse_line(line)
    assert rec is not None and rec.tweet_id == "293846693215096832"
    assert rec.text == "Click Clack\twith a tab :)"
    assert (rec.p_aa, rec.p_white) == (0.894545454545, 0.0890909090909)
    assert parse_line(line.encode()) == rec
    assert parse_line("1\t2\t3\n") is None
    assert parse_line(line.replace("0.894545454545", "n/a")) is None


def test_vocabulary_and_encoding():
    vocab = build_vocabulary([["b", "a", "b"], ["c", "a", "b", "<unk>"]], 4)
    assert vocab == ["<pad>", "<unk>", "b", "a"]  # by count, ties by token
    index = {t: i for i, t in enumerate(vocab + ["<cue>"])}
    assert encode(["a", "zz", "b"], index, 5) == [3, 1, 2, 0, 0]
    assert encode(["a", "b", "a", "b"], index, 3, cue="<cue>") == [3, 2, 4]  # cue never cut
    with pytest.raises(ValueError, match="vocab_size=1"):
        build_vocabulary([], 1)


# ------------------------------------------------------------------ dataset


def test_sample_sizes_balance_and_types(corpus):
    train, test = tweets(corpus)
    assert isinstance(train, TextGroupedDataset) and isinstance(test, TextGroupedDataset)
    assert train.group_names == list(DIALECTS) and train.class_names == list(CLASS_NAMES)
    assert train.inputs.dtype == torch.int64 and train.input_shape == (10,)
    for ds, sizes in ((train, SMALL["train_sizes"]), (test, SMALL["test_sizes"])):
        assert ds.group_sizes() == sizes
        for g, d in enumerate(DIALECTS):
            labels = ds.labels[ds.groups == g]
            assert int((labels == 0).sum()) == int((labels == 1).sum()) == sizes[d] // 2
    counts = train.info["counts"]
    assert counts["eligible"] == {f"{d}/{c}": PER_CLASS[d] for d in DIALECTS
                                  for c in CLASS_NAMES}
    assert counts["malformed"] == 3 and counts["duplicates"] == 1 and counts["no_dialect"] == 1
    assert counts["AAE_too_short"] == 1 and counts["SAE_too_short"] == 1
    # The vocabulary comes from the training split; ids are in range; padding is 0.
    assert train.vocabulary[:2] == ("<pad>", "<unk>")
    assert set(CUE_TOKENS.values()) <= set(train.vocabulary[2:6])
    assert test.vocabulary == train.vocabulary
    init = train.model_inputs()["embedding_init"]  # handed to the model
    assert init.vocabulary == train.vocabulary and init.vectors is None
    assert test.embedding_init is init


def test_label_symbols_are_gone_and_train_test_disjoint(corpus):
    train, test = tweets(corpus, emoji_probability=0.0)
    label_tokens = {":)", ":d", "=)", ":(", ":-(", "):", "😂", "😍", "☺", "😭", "😒", "☹"}
    seen = [tuple(ds.decode(i)) for ds in (train, test) for i in range(len(ds))]
    assert not label_tokens & {t for s in seen for t in s}
    assert not set(seen[:len(train)]) & set(seen[len(train):])
    assert len(set(seen)) == len(seen)
    assert not set(CUE_TOKENS.values()) & set(train.vocabulary)
    # Dialect and class words made it through: each tweet has its class word.
    for i in range(len(train)):
        words = set(train.decode(i))
        cls = CLASS_NAMES[int(train.labels[i])]
        assert words & set(WORDS[cls]), words


def test_cue_tokens_follow_dialect_class_and_probability(corpus):
    train, test = tweets(corpus, emoji_probability=1.0)
    for ds in (train, test):
        for i in range(len(ds)):
            cue = CUE_TOKENS[DIALECTS[int(ds.groups[i])], CLASS_NAMES[int(ds.labels[i])]]
            assert ds.decode(i)[-1] == cue
    train, _ = tweets(corpus, emoji_probability=0.5)
    assert 0 < train.info["cues"] < len(train)


def test_deterministic_by_seed(corpus):
    a, _ = tweets(corpus, seed=3)
    b, _ = tweets(corpus, seed=3)
    c, _ = tweets(corpus, seed=4)
    assert torch.equal(a.inputs, b.inputs) and a.info["tweet_ids"] == b.info["tweet_ids"]
    assert a.info["tweet_ids"] != c.info["tweet_ids"]


def test_truncation_keeps_the_cue(corpus):
    train, _ = tweets(corpus, max_length=3, emoji_probability=1.0)
    assert train.input_shape == (3,)
    assert all(train.decode(i)[-1].startswith("<cue-") for i in range(len(train)))
    assert int((train.inputs == 0).sum()) == 0  # every tweet has >= 3 tokens


def test_thresholds_and_vocab_size(corpus):
    train, _ = tweets(corpus, vocab_size=12)
    assert len(train.vocabulary) == 12 and int(train.inputs.max()) < 12
    assert (train.inputs == 1).any()  # unknown words
    with pytest.raises(ValueError, match="fewer than"):  # every AAE tweet has p_AA <= 0.99
        tweets(corpus, aae_threshold=0.99)
    with pytest.raises(ValueError, match=r"AAE negative has 12 eligible tweets"):
        tweets(corpus, train_sizes={"AAE": 20, "SAE": 2})


def test_option_errors(corpus):
    for options, match in (
        ({"train_sizes": {"AAE": 10}}, "train_sizes="),
        ({"test_sizes": {"AAE": -1, "SAE": 2}}, r"test_sizes\['AAE'\]=-1"),
        ({"train_sizes": {"AAE": 0, "SAE": 0}}, "at least one"),
        ({"aae_threshold": 1.0}, "aae_threshold=1.0"),
        ({"emoji_probability": 1.5}, "emoji_probability=1.5"),
        ({"max_length": 1}, "max_length=1"),
        ({"vocab_size": 5}, "vocab_size=5"),  # < the 6 specials
        ({"files": "twitteraae_all"}, "files="),
        ({"glove": ""}, "glove="),
    ):
        with pytest.raises(ValueError, match=match):
            tweets(corpus, **options)
    with pytest.raises(ValueError, match="unknown option"):
        load_dataset("tweets", data_dir=corpus, nonsense=1)
    assert dataset_options("tweets")["train_sizes"] == {"AAE": 1000, "SAE": 60000}


def test_missing_corpus_and_glove_say_where_to_get_them(tmp_path, corpus):
    with pytest.raises(DatasetNotFoundError, match="slanglab.cs.umass.edu/TwitterAAE"):
        tweets(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="nlp.stanford.edu/projects/glove"):
        tweets(corpus, glove="glove/glove.840B.300d.txt")


def test_gz_file_other_folder_max_lines_and_two_files(tmp_path, corpus):
    write_synthetic_corpus(tmp_path / "TwitterAAE-full-v1" / "twitteraae_all.gz", PER_CLASS,
                           seed=1)
    with gzip.open(tmp_path / "TwitterAAE-full-v1" / "twitteraae_all.gz", "rt") as f:
        assert f.read() == (corpus / "twitteraae" / "twitteraae_all").read_text()
    a, _ = tweets(tmp_path)
    b, _ = tweets(corpus)
    assert torch.equal(a.inputs, b.inputs)
    with pytest.raises(ValueError, match="fewer than"):
        tweets(corpus, max_lines=20)
    # A second file holding the same tweets adds nothing: they are duplicates.
    src = corpus / "twitteraae" / "twitteraae_all"
    (tmp_path / "both").mkdir()
    (tmp_path / "both" / "twitteraae_all").write_bytes(src.read_bytes())
    (tmp_path / "both" / "twitteraae_all_aa").write_bytes(src.read_bytes())
    c, _ = tweets(tmp_path, path="both", files=["twitteraae_all", "twitteraae_all_aa"])
    assert c.info["counts"]["eligible"] == b.info["counts"]["eligible"]


def test_cache_is_written_and_reused(tmp_path, corpus, monkeypatch):
    first, _ = tweets(corpus, cache=True, cache_dir=str(tmp_path / "c"))
    assert first.info["cache"] and Path(first.info["cache"]).is_file()

    def fail(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(tweets_module, "_sample", fail)
    again, _ = tweets(corpus, cache=True, cache_dir=str(tmp_path / "c"), vocab_size=50,
                      max_length=6)  # applied after the cache
    assert again.info["tweet_ids"] == first.info["tweet_ids"]
    with pytest.raises(AssertionError, match="cache was not used"):
        tweets(corpus, cache=True, cache_dir=str(tmp_path / "c"), seed=9)


def test_glove_vectors_are_handed_to_the_model(tmp_path, corpus):
    glove = tmp_path / "glove" / "glove.tiny.6d.txt"
    glove.parent.mkdir()
    rng = np.random.default_rng(0)
    words = ["finna", "love", "coffee", "<user>", "Hate", "the"]
    glove.write_text("".join(w + " " + " ".join(f"{v:.4f}" for v in rng.normal(size=6)) + "\n"
                             for w in words), encoding="utf-8")
    train, _ = tweets(corpus, glove=str(glove), glove_dim=6, cache=True,
                      cache_dir=str(tmp_path / "c"))
    init = train.model_inputs()["embedding_init"]
    assert init.vectors is not None and init.vectors.shape == (
        len(train.vocabulary), 6)
    vocab = list(train.vocabulary)
    np.testing.assert_array_equal(init.vectors[0], 0.0)  # <pad>
    for w in ("finna", "love", "hate"):  # "hate" by the lowercase fallback
        assert w in vocab
    assert train.info["glove"]["found"] >= 4
    assert "GloVe glove.tiny.6d.txt" in init.source
    # The .zip spelling of a missing .txt path is found.
    with zipfile.ZipFile(tmp_path / "glove" / "glove.zipped.6d.zip", "w") as zf:
        zf.writestr("glove.zipped.6d.txt", glove.read_text())
    zipped, _ = tweets(corpus, glove=str(tmp_path / "glove" / "glove.zipped.6d.txt"),
                       glove_dim=6)
    np.testing.assert_array_equal(zipped.embedding_init.vectors, init.vectors)
    assert zipped.info["glove"]["file"].endswith(".zip")


def test_subset_and_reduce_keep_the_vocabulary(corpus):
    train, _ = tweets(corpus)
    reduced = reduce_groups(train, {"AAE": 4}, seed=0)
    assert isinstance(reduced, TextGroupedDataset)
    assert reduced.vocabulary == train.vocabulary and reduced.group_sizes()["AAE"] == 4
    assert "vocabulary=" in repr(reduced)
    with pytest.raises(ValueError, match="expected int64"):
        TextGroupedDataset(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long),
                           torch.zeros(2, dtype=torch.long), vocabulary=["<pad>"],
                           group_names=["a"], num_classes=1)
