"""ptlearn.data: resolution and atomic downloads (offline, with fake fetchers), the real-corpus
loaders and their splits, batching helpers, synthetic tasks and the negation grammar."""

import csv
import hashlib
import subprocess
import sys
import urllib.error

import pytest
import torch
import torch.nn.functional as F

from ptlearn.data import (
    AG_NEWS_CLASSES,
    BOS_ID,
    EOS_ID,
    PAD_ID,
    DataNotFoundError,
    DictDataset,
    LMDataset,
    addition_task,
    associative_recall,
    collate,
    copy_task,
    dataset_dir,
    load_ag_news,
    load_digits,
    load_sst2,
    load_tinyshakespeare,
    make_grammar_corpus,
    make_grammar_documents,
    number_to_words,
    number_words_task,
    random_lm_batch,
    reverse_task,
    sentiment_label,
    sort_task,
    sources,
    train_val_split,
)
from ptlearn.data.grammar import NEGATIONS
from ptlearn.data.text import read_ag_news_csv, read_sst2_tsv

FAKE_TEXT = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    """No data directory, an empty cache in tmp_path, and a fetcher that fails if it is called."""
    monkeypatch.delenv("PTLEARN_DATA_DIR", raising=False)
    monkeypatch.setenv("PTLEARN_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(*args):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(sources, "fetch_url", no_network)
    monkeypatch.setattr(sources, "_download_hf_dataset", no_network)
    return tmp_path / "cache"


def files_under(folder):
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# ---------------------------------------------------------------- resolution and downloads


def test_data_dir_comes_first(data_dir):
    assert dataset_dir("sst2") == data_dir / "sst2"
    assert load_tinyshakespeare().startswith("First Citizen")


def test_cache_is_used_when_there_is_no_data_dir(empty_env):
    (empty_env / "tinyshakespeare").mkdir(parents=True)
    (empty_env / "tinyshakespeare" / "input.txt").write_bytes(FAKE_TEXT)
    assert load_tinyshakespeare() == FAKE_TEXT.decode()


def test_download_writes_the_file_into_the_cache(empty_env, monkeypatch):
    monkeypatch.setitem(
        sources._SOURCES["tinyshakespeare"].sha256,
        "input.txt",
        hashlib.sha256(FAKE_TEXT).hexdigest(),
    )
    calls = []

    def fake_fetch(url, dest_path):
        calls.append(url)
        dest_path.write_bytes(FAKE_TEXT)

    monkeypatch.setattr(sources, "fetch_url", fake_fetch)
    assert load_tinyshakespeare() == FAKE_TEXT.decode()
    assert calls == [sources.TINYSHAKESPEARE_URL]
    assert files_under(empty_env) == [empty_env / "tinyshakespeare" / "input.txt"]
    load_tinyshakespeare()  # now served from the cache
    assert len(calls) == 1


def test_checksum_mismatch_saves_nothing(empty_env, monkeypatch):
    monkeypatch.setattr(sources, "fetch_url", lambda url, dest: dest.write_bytes(b"<html>404"))
    with pytest.raises(DataNotFoundError, match="checksum mismatch") as info:
        load_tinyshakespeare()
    assert sources.TINYSHAKESPEARE_SHA256 in str(info.value)
    assert files_under(empty_env) == []


@pytest.mark.parametrize("error", [ConnectionResetError("connection lost"), KeyboardInterrupt()])
def test_interrupted_download_leaves_nothing(empty_env, monkeypatch, error):
    def fetch_half(url, dest_path):
        dest_path.write_bytes(FAKE_TEXT[:100])
        raise error

    monkeypatch.setattr(sources, "fetch_url", fetch_half)
    expected = DataNotFoundError if isinstance(error, Exception) else KeyboardInterrupt
    with pytest.raises(expected):
        load_tinyshakespeare()
    assert files_under(empty_env) == []


def test_offline_without_data_gives_one_clear_error(empty_env, tmp_path, monkeypatch):
    monkeypatch.setenv("PTLEARN_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError) as info:
        load_sst2()
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for part in ["'sst2'", "internet", "PTLEARN_DATA_DIR", "sst2/train.tsv", "ag_news/test.csv"]:
        assert part in message
    assert str(tmp_path / "nowhere" / "sst2") in message
    assert "no network in tests" in message


def test_hf_downloads_write_the_data_dir_layout(empty_env, monkeypatch):
    def fake_hf(path, config, split):
        if path.endswith("glue"):
            n = {"train": 6, "validation": 4}[split]
            return [
                {"sentence": f"{split} sentence {i} ", "label": i % 2, "idx": i} for i in range(n)
            ]
        return [{"text": f"news {i} a\\b", "label": i % 4} for i in range(12)]

    monkeypatch.setattr(sources, "_download_hf_dataset", fake_hf)
    test = load_sst2("test")
    assert test.texts == [f"validation sentence {i}" for i in range(4)]
    assert test.labels == [0, 1, 0, 1]
    lines = (empty_env / "sst2" / "train.tsv").read_text().splitlines()
    assert lines[:2] == ["label\tsentence", "0\ttrain sentence 0"]
    news = load_ag_news("test")
    assert sorted(news.labels) == sorted(i % 4 for i in range(12))
    assert news.texts[0] == "news 0 a b"
    with open(empty_env / "ag_news" / "test.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["label", "title", "description"] and rows[1][0] == "1"


def test_heavy_libraries_are_imported_lazily():
    code = (
        "import sys, ptlearn.data, ptlearn.tokenization, ptlearn.metrics, ptlearn.device\n"
        "print(sorted(m for m in ('datasets', 'sklearn', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- real corpora


def test_tinyshakespeare_checksum_and_split(data_dir):
    raw = (data_dir / "tinyshakespeare" / "input.txt").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == sources.TINYSHAKESPEARE_SHA256
    text = load_tinyshakespeare()
    train, val = train_val_split(text)
    assert len(train) == int(0.9 * len(text)) and train + val == text
    ids = torch.arange(100)
    train_ids, val_ids = train_val_split(ids)
    assert train_ids.tolist() == list(range(90)) and val_ids.tolist() == list(range(90, 100))


def test_sst2_splits(data_dir):
    train, val, test = (load_sst2(s) for s in ("train", "validation", "test"))
    assert len(val) == len(test) == 872 and 60_000 < len(train) < 67349 - 872
    assert set(train.labels) == set(val.labels) == set(test.labels) == {0, 1}
    assert train.classes == ["negative", "positive"]
    assert test[0] == ("one long string of cliches .", 0)
    assert not any("\r" in t or "\t" in t for t in train.texts)
    assert load_sst2("validation").texts == val.texts  # deterministic
    all_rows = sorted(zip(*read_sst2_tsv(data_dir / "sst2" / "train.tsv")))
    assert set(zip(train.texts + val.texts, train.labels + val.labels)) <= set(all_rows)


def test_ag_news_splits(data_dir):
    splits = {s: load_ag_news(s) for s in ("train", "validation", "test")}
    assert [len(d) for d in splits.values()] == [6000, 800, 800]
    for d in splits.values():
        n = len(d) // 4
        assert [d.labels.count(c) for c in range(4)] == [n] * 4
        assert d.classes == AG_NEWS_CLASSES
    union = sorted(pair for d in splits.values() for pair in zip(d.texts, d.labels))
    assert union == sorted(zip(*read_ag_news_csv(data_dir / "ag_news" / "test.csv")))
    assert load_ag_news("test").texts == splits["test"].texts
    assert not any("\\" in t for t in splits["train"].texts)
    with pytest.raises(ValueError, match="split"):
        load_ag_news("dev")


def test_malformed_rows_name_the_file_and_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("PTLEARN_DATA_DIR", str(tmp_path))
    (tmp_path / "sst2").mkdir()
    tsv = tmp_path / "sst2" / "dev.tsv"
    tsv.write_text("label\tsentence\n1\tfine\n2\tbad label\n0\tok\nno tab here\n")
    (tmp_path / "sst2" / "train.tsv").write_text("label\tsentence\n")
    with pytest.raises(ValueError, match=r"dev\.tsv.*line\(s\) 3, 5"):
        load_sst2("test")
    (tmp_path / "ag_news").mkdir()
    (tmp_path / "ag_news" / "test.csv").write_text('label,title,description\n1,a,b\n9,a,b\n2,"x"\n')
    with pytest.raises(ValueError, match=r"test\.csv.*line\(s\) 3, 4"):
        load_ag_news("test")


def test_digits():
    x_train, y_train = load_digits("train")
    x_test, y_test = load_digits("test")
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.long
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert torch.bincount(y_test, minlength=10).min() >= 35  # stratified: every digit ~36 times
    torch.testing.assert_close(load_digits("test")[0], x_test)


# ---------------------------------------------------------------- batching


def test_random_lm_batch_windows():
    """nanoGPT's get_batch: windows of block_size + 1 tokens; inputs are their first T tokens and
    the labels the whole window, so the last input position has a next token to predict."""
    data = torch.arange(1000)
    batch = random_lm_batch(
        data, block_size=16, batch_size=4, generator=torch.Generator().manual_seed(1)
    )
    x, y = batch["input_ids"], batch["labels"]
    assert x.shape == (4, 16) and y.shape == (4, 17)
    torch.testing.assert_close(y - y[:, :1], torch.arange(17).expand(4, 17))  # contiguous windows
    torch.testing.assert_close(x, y[:, :-1])
    again = random_lm_batch(data, 16, 4, torch.Generator().manual_seed(1))["input_ids"]
    torch.testing.assert_close(again, x)
    with pytest.raises(ValueError, match="block_size"):
        random_lm_batch(torch.arange(10), 10, 2)


def test_random_lm_batch_reaches_the_last_token():
    """With 17 tokens and block_size 16 there is exactly one window: the whole text, its last
    token as the last label (an off-by-one start range would fail or miss it)."""
    batch = random_lm_batch(torch.arange(17), 16, 3, torch.Generator().manual_seed(0))
    assert batch["labels"].tolist() == [list(range(17))] * 3


def test_random_lm_batch_trains_every_gpt_position():
    """The batch goes straight into GPT: the loss scores all T positions, the last one included
    (with HF's labels == input_ids the last position would get no gradient)."""
    from ptlearn import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=8))
    batch = random_lm_batch(torch.randint(50, (200,)), 8, 4, torch.Generator().manual_seed(0))
    out = model(**batch)
    expected = F.cross_entropy(out.logits.flatten(0, 1), batch["labels"][:, 1:].flatten())
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.embeddings.position.weight.grad[7].abs().sum() > 0  # position max_len - 1


def test_lm_dataset():
    """Evaluation windows of block_size + 1 tokens, block_size apart: each token after the
    first is a target exactly once."""
    data = torch.arange(100)
    ds = LMDataset(data, block_size=32)
    assert len(ds) == 3
    assert ds[2]["input_ids"].tolist() == list(range(64, 96))
    assert ds[2]["labels"].tolist() == list(range(64, 97))
    targets = [t for i in range(len(ds)) for t in ds[i]["labels"][1:].tolist()]
    assert targets == list(range(1, 97))  # 97..99 do not fill a window
    assert len(LMDataset(torch.arange(97), 32)) == 3 and len(LMDataset(torch.arange(96), 32)) == 2
    assert len(LMDataset(data, 32, stride=16)) == 5
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(ValueError, match="more than block_size"):
        LMDataset(torch.arange(32), 32)


def test_dict_dataset_and_collate_pad():
    ds = DictDataset(input_ids=[[5, 6, 7], [8]], labels=[1, 0])
    batch = collate([ds[0], ds[1]], pad_id=3)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 3, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]
    tokens = collate([{"input_ids": [1, 2], "labels": [1, 2]}, {"input_ids": [4], "labels": [4]}])
    assert tokens["labels"].tolist() == [[1, 2], [4, -100]]
    images = collate([{"pixel_values": torch.ones(1, 8, 8), "labels": torch.tensor(3)}] * 2)
    assert images["pixel_values"].shape == (2, 1, 8, 8) and images["labels"].tolist() == [3, 3]
    with pytest.raises(ValueError, match="common length"):
        DictDataset(input_ids=[[1]], labels=[0, 1])


# ---------------------------------------------------------------- synthetic tasks


@pytest.mark.parametrize(
    "task, relation",
    [
        (copy_task, lambda src: src),
        (reverse_task, lambda src: src.flip(1)),
        (sort_task, lambda src: src.sort(dim=1).values),
    ],
)
def test_symbol_tasks(task, relation):
    data = task(50, seq_len=6, n_symbols=5, seed=3)
    assert data.src.shape == (50, 6) and data.tgt_in.shape == data.tgt_out.shape == (50, 7)
    assert (data.tgt_in[:, 0] == BOS_ID).all() and (data.tgt_out[:, -1] == EOS_ID).all()
    torch.testing.assert_close(data.tgt_out[:, :-1], relation(data.src))
    torch.testing.assert_close(data.tgt_in[:, 1:], data.tgt_out[:, :-1])
    assert data.src.min() >= 3 and data.src.max() < len(data.vocab) == 8
    torch.testing.assert_close(task(50, 6, 5, seed=torch.Generator().manual_seed(3)).src, data.src)


def test_addition_is_correct():
    data = addition_task(200, n_digits=3, seed=0)
    for src, tgt in zip(data.src, data.tgt_out):
        a, b = "".join(data.vocab.decode(src)).split("+")
        assert int(a) + int(b) == int("".join(data.vocab.decode(tgt)))
    batch = data.batch(slice(0, 8))
    assert (batch["labels"] != PAD_ID).all()
    assert ((batch["labels"] == -100) == (data.tgt_out[:8] == PAD_ID)).all()


def test_number_to_words():
    cases = {
        0: "zero",
        7: "seven",
        13: "thirteen",
        20: "twenty",
        45: "forty five",
        105: "one hundred five",
        1005: "one thousand five",
        1234: "one thousand two hundred thirty four",
        9999: "nine thousand nine hundred ninety nine",
    }
    for x, words in cases.items():
        assert " ".join(number_to_words(x)) == words
    data = number_words_task(100, seed=1)
    assert len(data.vocab) == 43
    for src, tgt in zip(data.src, data.tgt_out):
        assert data.vocab.decode(tgt) == number_to_words(int("".join(data.vocab.decode(src))))


def test_associative_recall():
    d = associative_recall(300, n_pairs=4, n_keys=6, n_values=5, seed=0)
    rows = torch.arange(300)
    assert (d["labels"] == d["values"][rows, d["target_pos"]]).all()
    assert (d["query"] == d["keys"][rows, d["target_pos"]]).all()
    assert all(len(set(k)) == 4 for k in d["keys"].tolist())  # distinct keys per example
    assert d["input_ids"].shape == (300, 9)
    assert (d["input_ids"][:, 0:8:2] == d["keys"]).all() and (
        d["input_ids"][:, -1] == d["query"]
    ).all()
    assert d["vocab"].decode([d["keys"][0, 0]])[0] in "abcdef"
    assert torch.bincount(d["target_pos"]).min() > 50  # the answer can sit in any pair


# ---------------------------------------------------------------- grammar


def test_grammar_labels_follow_the_rule_and_negation_flips():
    texts, labels = make_grammar_corpus(2000, seed=0)
    assert (texts, labels) == make_grammar_corpus(2000, seed=0)
    assert texts != make_grammar_corpus(2000, seed=1)[0]
    assert labels == [sentiment_label(t) for t in texts]
    negated = [t for t in texts if NEGATIONS & set(t.split())]
    assert 0.45 < len(negated) / len(texts) < 0.55
    for text in negated[:200]:
        plain = " ".join(w for w in text.split() if w not in NEGATIONS)
        assert sentiment_label(plain) == 1 - sentiment_label(text)
    seen = {}
    for text, label in zip(texts, labels):
        assert seen.setdefault(text, label) == label  # one sentence, one label


def test_bag_of_words_cannot_solve_the_grammar():
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    texts, labels = make_grammar_corpus(4000, seed=0)
    vectorizer = CountVectorizer(token_pattern=r"\S+")
    x = vectorizer.fit_transform(texts)
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(x[:3000], labels[:3000])
    assert clf.score(x[:3000], labels[:3000]) <= 0.76  # even on its own training data
    assert clf.score(x[3000:], labels[3000:]) <= 0.76


def test_grammar_documents():
    docs = make_grammar_documents(50, seed=0, min_sentences=3, max_sentences=6)
    assert docs == make_grammar_documents(50, seed=0)
    assert {len(d) for d in docs} <= {3, 4, 5, 6} and len({len(d) for d in docs}) > 1
    for doc in docs:
        assert " last " in doc[0] and doc[-1].startswith("overall i ")
        topic = doc[-1].split()[-1]
        assert topic in doc[0]
        if len(doc) > 3:
            assert doc[1].startswith("first ") and doc[2].startswith("then ")


def test_grammar_splits_hold_out_sentences_that_training_never_repeats():
    """Two independent draws of the small generated language share most sentences; the splits
    the chapters' offline fallbacks use must not (a test sentence seen in training tests memory)."""
    from ptlearn.data import make_grammar_corpus, make_grammar_splits

    (train_texts, train_labels), (test_texts, test_labels) = make_grammar_splits(24000, 500)
    assert len(test_texts) == len(set(test_texts)) == 500
    assert not set(train_texts) & set(test_texts)
    assert len(train_texts) == len(train_labels) > 15000 and len(test_labels) == 500
    leaky = set(make_grammar_corpus(22000, seed=1)[0])  # what the fallbacks did before
    assert sum(t in leaky for t in make_grammar_corpus(500, seed=2)[0]) > 400


def test_sorted_by_length_keeps_rows_together_shortest_first():
    from ptlearn.data import sorted_by_length

    data = sorted_by_length(input_ids=[[1, 2, 3], [4], [5, 6]], labels=[0, 1, 2])
    assert [data[i]["input_ids"] for i in range(3)] == [[4], [5, 6], [1, 2, 3]]
    assert [data[i]["labels"] for i in range(3)] == [1, 2, 0]  # each label moved with its row
    with pytest.raises(ValueError, match="input_ids"):
        sorted_by_length(labels=[0, 1])
    with pytest.raises(ValueError, match="one common length"):
        sorted_by_length(input_ids=[[1], [2]], labels=[0])


def test_bucketed_batches_take_neighbours_and_pad_little_compared_with_random_batches():
    from ptlearn.data import bucketed_batches, sorted_by_length

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 40, (500,), generator=g).tolist()
    ids = [[7] * n for n in lengths]
    data = sorted_by_length(input_ids=ids, labels=list(range(500)))
    batch = bucketed_batches(data, 16, pad_id=0)(torch.Generator().manual_seed(1))
    assert batch["input_ids"].shape[0] == 16 and batch["labels"].shape == (16,)
    real = batch["attention_mask"].sum(1)  # [B] the lengths of the rows in the batch
    assert real.max() - real.min() <= 3  # neighbours in the sorted order: nearly one length
    assert torch.all(batch["input_ids"][batch["attention_mask"] == 0] == 0)  # padded with pad_id
    shuffled = collate([{"input_ids": ids[i]} for i in range(16)])
    assert batch["attention_mask"].float().mean() > shuffled["attention_mask"].float().mean()
    with pytest.raises(ValueError, match="exceeds the 500 rows"):
        bucketed_batches(data, 501)


def test_eval_batches_cover_every_row_once_in_order():
    from ptlearn.data import eval_batches, sorted_by_length

    data = sorted_by_length(
        input_ids=[[5] * (i % 7 + 1) for i in range(10)], labels=list(range(10))
    )
    batches = eval_batches(data, batch_size=4, pad_id=9)
    assert [len(b["labels"]) for b in batches] == [4, 4, 2]
    assert torch.cat([b["labels"] for b in batches]).tolist() == [
        data[i]["labels"] for i in range(10)
    ]
    assert all((b["input_ids"][b["attention_mask"] == 0] == 9).all() for b in batches)
