"""Misuse of the Python API: odd inputs must give a clear error (or a correct result), never a
silently wrong one, and files must be written so others can read them and nothing half-written
stays. Each case fails on the code before issue 14's fixes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest
import torch
from helpers_train import TinyConfig, TinyLM

from ptlearn import checkpoint as ckpt
from ptlearn import validation
from ptlearn.checkpoint import atomic_write_bytes, load_checkpoint, read_meta, save_checkpoint
from ptlearn.data import text as text_data
from ptlearn.tokenization import CharTokenizer, HFTokenizer, load_tokenizer

TEXTS = ["the cat sat on the mat", "a dog ate the bone", "hello world"] * 20


@pytest.fixture(scope="module")
def wordpiece():
    return HFTokenizer.train_wordpiece(TEXTS, 60)


@pytest.fixture(scope="module")
def bpe():
    return HFTokenizer.train_bpe(TEXTS, 280)


# --- ids outside the vocabulary, in every tokenizer ------------------------------------------


@pytest.mark.parametrize("bad", [-1, -5, 10**6])
@pytest.mark.parametrize("kind", ["char", "wordpiece", "bpe"])
def test_decode_refuses_ids_outside_the_vocabulary(kind, bad, wordpiece, bpe):
    tok = {"char": CharTokenizer("abc"), "wordpiece": wordpiece, "bpe": bpe}[kind]
    bad = bad if bad < 0 else tok.vocab_size + bad
    for call in (tok.decode, tok.convert_ids_to_tokens):
        with pytest.raises(
            ValueError, match=rf"Token id {bad} is outside .*\[0, {tok.vocab_size}\)"
        ):
            call([0, bad])
    assert tok.decode(torch.tensor([0, 1])) == tok.decode([0, 1])  # valid ids still decode


def test_char_decode_of_minus_one_is_not_the_last_character():
    with pytest.raises(ValueError, match="outside this tokenizer's vocabulary"):
        CharTokenizer("abc").decode([-1])  # used to return "c"


# --- tokenizer files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"garbage", "not UTF-8 JSON"),
        (b"[1, 2]", "holds a JSON list"),
        (b'{"version": "1.0", "model": 3}', "not a valid tokenizer.json"),
        (b"\xff\xfe{}", "not UTF-8 JSON"),
    ],
)
def test_a_damaged_tokenizer_file_is_named(tmp_path, content, message):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content)
    for load in (load_tokenizer, HFTokenizer.load):
        with pytest.raises(ValueError, match=message) as info:
            load(path)
        assert str(path) in str(info.value)


def test_a_damaged_char_tokenizer_file_is_named(tmp_path):
    path = tmp_path / "tok.json"
    path.write_text(json.dumps({"type": "CharTokenizer", "tokens": "abc", "special_tokens": []}))
    with pytest.raises(ValueError, match="is damaged"):
        CharTokenizer.load(path)


def test_a_tokenizer_json_with_a_bom_loads(tmp_path, wordpiece):
    path = tmp_path / "tokenizer.json"
    wordpiece.save(path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # re-saved by a Windows editor
    assert load_tokenizer(path).encode("the cat") == wordpiece.encode("the cat")


# --- encodings, empty and tiny data -------------------------------------------------------------


def test_sst2_with_a_bom_reads_its_header(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes("\ufefflabel\tsentence\r\n1\tgood film\r\n0\tbad\r\n".encode())
    assert text_data.read_sst2_tsv(path) == (["good film", "bad"], [1, 0])


def test_sst2_holding_only_its_header_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("label\tsentence\n")
    with pytest.raises(ValueError, match="holds only its header") as info:
        text_data.read_sst2_tsv(path)  # used to return ([], []) and fail later, far away
    assert str(path) in str(info.value)


def test_an_empty_sst2_file_says_it_is_empty(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=f"{path} is empty"):
        text_data.read_sst2_tsv(path)


def test_latin1_sst2_names_the_file_and_suggests_utf8(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes("label\tsentence\n1\tcaf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not UTF-8 text \(byte 0xe9 on line 2\).*UTF-8") as info:
        text_data.read_sst2_tsv(path)  # used to be a bare UnicodeDecodeError
    assert str(path) in str(info.value)


def test_ag_news_with_a_bom_and_a_header_reads(tmp_path):
    path = tmp_path / "test.csv"
    path.write_bytes('\ufefflabel,title,description\n2,"Goal","late win"\n'.encode())
    assert text_data.read_ag_news_csv(path) == (["Goal late win"], [1])


def test_ag_news_with_no_rows_is_an_error(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("label,title,description\n")
    with pytest.raises(ValueError, match="holds no rows"):
        text_data.read_ag_news_csv(path)


def _corpus_dir(tmp_path, monkeypatch, content: bytes) -> Path:
    folder = tmp_path / "data" / "tinyshakespeare"
    folder.mkdir(parents=True)
    (folder / "input.txt").write_bytes(content)
    monkeypatch.setenv("PTLEARN_DATA_DIR", str(tmp_path / "data"))
    return folder / "input.txt"


def test_a_bom_never_becomes_a_vocabulary_character(tmp_path, monkeypatch):
    _corpus_dir(tmp_path, monkeypatch, b"\xef\xbb\xbf" + b"to be or not to be\n" * 100)
    text = text_data.load_tinyshakespeare()
    assert "\ufeff" not in CharTokenizer(text).tokens


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "holds only 0 characters"),
        (b"tiny corpus\n", "holds only 12 characters"),
        ("caf\xe9\n".encode("latin-1") * 500, "not UTF-8 text"),
    ],
)
def test_an_empty_tiny_or_latin1_corpus_names_the_file(tmp_path, monkeypatch, content, message):
    path = _corpus_dir(tmp_path, monkeypatch, content)
    with pytest.raises(ValueError, match=message) as info:
        text_data.load_tinyshakespeare()
    assert str(path) in str(info.value)


# --- model inputs: empty batches and NaN ------------------------------------------------------


def _models():
    from ptlearn.models import BertConfig, BertForPreTraining, GPTConfig
    from ptlearn.models.gpt import GPT

    small = dict(vocab_size=20, max_len=8, d_model=16, n_heads=2, n_layers=1, d_ff=32)
    return {"gpt": GPT(GPTConfig(**small)), "bert": BertForPreTraining(BertConfig(**small))}


@pytest.mark.parametrize("name", ["gpt", "bert"])
def test_an_empty_batch_is_a_clear_error(name):
    model = _models()[name]
    with pytest.raises(ValueError, match=r"input_ids is an empty batch \(shape \(0, 4\)\)"):
        model(torch.zeros(0, 4, dtype=torch.long))  # used to fail inside aminmax()


def _vit():
    from ptlearn.models import ViTConfig
    from ptlearn.models.vit import ViTForImageClassification

    config = ViTConfig(
        image_size=8, patch_size=2, n_channels=1, d_model=16, n_heads=2, n_layers=1, d_ff=32
    )
    return ViTForImageClassification(config, n_classes=10).eval()


def test_a_nan_pixel_is_refused_with_an_opt_out(monkeypatch):
    vit = _vit()
    pixels = torch.rand(2, 1, 8, 8)
    pixels[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="pixel_values holds 1 NaN/inf value"):
        vit(pixels)  # used to give NaN logits without a word
    monkeypatch.setattr(validation, "CHECK_FINITE", False)
    assert torch.isnan(vit(pixels).logits[1]).all()  # the opt-out: the check costs a pass


def test_an_empty_image_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="pixel_values is an empty batch"):
        _vit()(torch.zeros(0, 1, 8, 8))


def test_inf_pixels_are_refused():
    with pytest.raises(ValueError, match="NaN/inf"):
        _vit()(torch.full((1, 1, 8, 8), float("inf")))


# --- checkpoints: meta, recovery, modes, full disk ----------------------------------------


def _tiny():
    torch.manual_seed(0)
    return TinyLM(TinyConfig())


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "3"])
def test_meta_json_that_is_not_an_object_is_named(tmp_path, content):
    path = save_checkpoint(tmp_path / "checkpoint", _tiny(), {"step": 1})
    (path / "meta.json").write_text(content)
    with pytest.raises(ValueError, match="not an object") as info:
        read_meta(path)  # used to be AttributeError: 'list' object has no attribute 'get'
    assert str(path / "meta.json") in str(info.value)


def test_a_complete_old_checkpoint_is_recovered_before_anyone_asks(tmp_path):
    """A crash between the two renames leaves checkpoint.old-* and no checkpoint: the run
    deciding whether to resume must find it (it checked `checkpoint` exists first)."""
    path = save_checkpoint(tmp_path / "checkpoint", _tiny(), {"step": 7})
    os.replace(path, tmp_path / "checkpoint.old-1a2b3c4d")
    assert ckpt.recover_checkpoint(path) is True
    assert path.is_dir() and not list(tmp_path.glob("checkpoint.old-*"))
    assert load_checkpoint(tmp_path)["meta"]["step"] == 7


def test_an_incomplete_tmp_checkpoint_is_not_recovered(tmp_path):
    (tmp_path / "checkpoint.tmp-x").mkdir()
    (tmp_path / "checkpoint.tmp-x" / "model.safetensors").write_bytes(b"half")
    assert ckpt.recover_checkpoint(tmp_path / "checkpoint") is False


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_checkpoints_are_written_with_the_users_umask(tmp_path, umask_022):
    path = save_checkpoint(tmp_path / "checkpoint", _tiny(), {"step": 1})
    assert _mode(path) == 0o755  # was 0700: a learner could not read an instructor's folder
    assert {_mode(f) for f in path.iterdir()} == {0o644}  # was 0600


def test_exported_html_figures_and_tokenizers_use_the_umask(tmp_path, umask_022, wordpiece):
    import matplotlib.pyplot as plt

    from ptlearn import viz
    from ptlearn.viz.figures import save_figure

    att = tuple(torch.softmax(torch.randn(1, 2, 3, 3), -1) for _ in range(2))
    page = viz.export_html(att, ["a", "b", "c"], tmp_path / "view.html")
    fig = plt.figure()
    figure = save_figure(fig, tmp_path / "fig.png")
    plt.close(fig)
    wordpiece.save(tmp_path / "tokenizer.json")
    CharTokenizer("abc").save(tmp_path / "chars.json")
    modes = {p.name: _mode(Path(p)) for p in (page, figure)}
    modes.update({n: _mode(tmp_path / n) for n in ("tokenizer.json", "chars.json")})
    assert set(modes.values()) == {0o644}, modes


def test_a_stricter_umask_is_respected(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write_bytes(tmp_path / "private.bin", b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "private.bin") == 0o600


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs (root only): a real ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for a full disk needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)])
    if done.returncode != 0:
        pytest.skip("mount -t tmpfs is not allowed here")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


class Wide(torch.nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(n))


def test_a_full_disk_keeps_the_old_checkpoint_and_leaves_no_partial_folder(tiny_disk):
    path = save_checkpoint(tiny_disk / "checkpoint", Wide(1000), {"step": 1})
    with pytest.raises(ckpt.WriteError, match="the disk is full") as info:
        save_checkpoint(path, Wide(1_000_000), {"step": 2})  # 4 MB on a 2 MB disk
    assert str(path) in str(info.value)
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["checkpoint"]  # no checkpoint.tmp-*
    assert load_checkpoint(path)["meta"]["step"] == 1


def test_a_full_disk_leaves_no_temporary_file(tiny_disk):
    with pytest.raises(
        ckpt.WriteError, match=f"Cannot write {tiny_disk / 'big.bin'}: the disk is full"
    ):
        atomic_write_bytes(tiny_disk / "big.bin", b"x" * 3_000_000)
    assert list(tiny_disk.iterdir()) == []


def test_a_file_where_the_folder_should_be_is_named(tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(ckpt.WriteError, match="a file is in the way") as info:
        save_checkpoint(tmp_path / "runs" / "checkpoint", _tiny(), {"step": 1})
    assert str(tmp_path / "runs") in str(info.value)


# --- playgrounds take HF tokenizers -----------------------------------------------------------


def test_playgrounds_accept_hf_tokenizer_objects(wordpiece):
    from ptlearn.viz.playgrounds import as_tokenizer

    raw = wordpiece.tokenizer  # a tokenizers.Tokenizer, as HF hands it out
    wrapped = as_tokenizer(raw)
    assert wrapped.mask_id == wordpiece.mask_id and wrapped.encode("cat") == wordpiece.encode("cat")
    assert as_tokenizer(wordpiece) is wordpiece

    class Fast:  # what transformers' PreTrainedTokenizerFast exposes
        backend_tokenizer = raw

    assert as_tokenizer(Fast()).mask_id == wordpiece.mask_id


def test_playgrounds_say_how_to_wrap_anything_else():
    from ptlearn.viz.playgrounds import fill_mask_playground

    class Slow:  # a slow transformers tokenizer: encode/decode but no ptlearn ids
        def encode(self, text):
            return [1]

        def decode(self, ids):
            return ""

        def convert_ids_to_tokens(self, ids):
            return []

    with pytest.raises(TypeError, match=r"Wrap a HF tokenizer with ptlearn.HFTokenizer"):
        fill_mask_playground(_models()["bert"], Slow())


def test_fill_mask_playground_runs_with_a_raw_hf_tokenizer(wordpiece):
    from ptlearn.models import BertConfig, BertForPreTraining
    from ptlearn.viz.playgrounds import fill_mask_playground

    model = BertForPreTraining(
        BertConfig(
            vocab_size=wordpiece.vocab_size, max_len=16, d_model=16, n_heads=2, n_layers=1, d_ff=32
        )
    ).eval()
    box = fill_mask_playground(model, wordpiece.tokenizer, text="the [MASK] sat")
    assert box.current["masks"] == [2]


def test_decoding_a_batch_says_to_decode_each_row(wordpiece):
    batch = torch.tensor([wordpiece.encode("the cat")])  # [1, T]: a model's input, not one row
    with pytest.raises(ValueError, match=r"shape \(1, \d+\): decode each row"):
        wordpiece.decode(batch)  # used to be TypeError: int() argument must be ... not 'list'
    assert CharTokenizer("abc").decode(torch.tensor(1)) == "b"  # a 0-d tensor is one id


# --- the Trainer: a notebook's interrupt, a crash between renames ------------------------------


class SigintAt:
    """A callback that presses Ctrl-C (a real SIGINT to this process) after step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_begin(self, trainer): ...

    def on_step_end(self, trainer, step, logs):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGINT)

    def on_eval_end(self, trainer, step, metrics): ...

    def on_train_end(self, trainer): ...


def _trainer(out, **kwargs):
    from helpers_train import make_batch_fn

    from ptlearn.training import TrainConfig, Trainer

    config = TrainConfig(max_steps=50, batch_size=4, out_dir=str(out), progress=False, lr=1e-2)
    return Trainer(_tiny(), config, make_batch_fn(4), **kwargs)


def test_an_interrupt_in_a_notebook_stops_cleanly_with_a_checkpoint(tmp_path, capsys):
    trainer = _trainer(tmp_path, callbacks=[SigintAt(3)])
    trainer.fit()  # used to raise KeyboardInterrupt mid-step and leave no checkpoint
    assert trainer.interrupted and trainer.state.step == 3
    line = capsys.readouterr().out.strip()
    assert line == (
        f"interrupted at step 3; checkpoint saved in {tmp_path / 'checkpoint'}. Call fit() again "
        f"to continue (or resume=True later)."
    )
    assert load_checkpoint(tmp_path)["meta"]["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C is back
    resumed = _trainer(tmp_path, resume=True)
    assert resumed.state.step == 3


def test_the_trainer_recovers_a_checkpoint_left_aside_by_a_crash(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.fit(steps=4)
    os.replace(tmp_path / "checkpoint", tmp_path / "checkpoint.old-89abcdef")
    assert _trainer(tmp_path, resume=True).state.step == 4  # used to start again from 0


def test_a_reader_of_a_live_folder_always_gets_one_consistent_checkpoint(tmp_path):
    """A notebook reads the run folder while `ptlearn train` keeps saving into it: meta.json,
    the weights and the trainer state of every read belong to the same checkpoint."""
    import threading

    model, stop, seen, errors = Wide(50_000), threading.Event(), [], []

    def write():
        try:
            for step in range(1, 60):
                with torch.no_grad():
                    model.weight.fill_(step)
                save_checkpoint(tmp_path / "checkpoint", model, {"step": step})
        except Exception as err:  # noqa: BLE001  (a failed save is the test's finding too)
            errors.append(f"writer: {err!r}")
        finally:
            stop.set()  # the reader stops either way

    save_checkpoint(tmp_path / "checkpoint", model, {"step": 0})
    writer = threading.Thread(target=write)
    writer.start()
    while not stop.is_set():
        try:
            got = load_checkpoint(tmp_path)
        except Exception as err:  # noqa: BLE001  (any failure is the test's finding)
            errors.append(repr(err))
            continue
        step = got["meta"]["step"]
        seen.append(step)
        assert got["trainer_state"]["step"] == step
        assert torch.all(got["state_dict"]["weight"] == step), step
    writer.join()
    assert not errors and len(seen) > 1
