"""Misuse of the ``ptlearn`` command as learners and instructors really use it: Ctrl-C, kills,
crashes between renames, one --out reused for another experiment, two runs on one folder, a
user's file in the way, read-only and full disks. Real subprocesses and real signals; tiny
presets so each case takes a few seconds. Each case fails on the code before issue 14's fixes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers_train import one_thread  # noqa: F401  (autouse fixture)

from ptlearn import cli

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 240  # generous: the test machine has 2 busy cores


def env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def start(*args: str, **extra_env) -> subprocess.Popen:
    """``python -m ptlearn.cli ARGS`` in the background (its own process group, like a shell)."""
    return subprocess.Popen(
        [sys.executable, "-m", "ptlearn.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(**extra_env),
        cwd=ROOT, start_new_session=True,
    )  # fmt: skip


def run(*args: str, **extra_env) -> subprocess.CompletedProcess:
    proc = start(*args, **extra_env)
    out, err = proc.communicate(timeout=WAIT_S)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one line a failed command printed: no traceback, exit status 2."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("ptlearn: error:")]
    assert len(lines) == 1, done.stderr[-2000:]
    return lines[0]


def result(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def step_of(out: Path) -> int | None:
    try:
        return json.loads((out / "checkpoint" / "meta.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return None


def wait_for(predicate, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


GPT = ("train", "gpt", "--preset", "tiny", "--no-progress")


# --- interruptions -------------------------------------------------------------------------


def test_ctrl_c_stops_cleanly_with_a_checkpoint_and_says_how_to_continue(data_dir, tmp_path):
    out = tmp_path / "gpt"
    # a checkpoint every 0.5 s tells the test that training is under way
    proc = start(*GPT, "--time-budget", "120", "--out", str(out), PTLEARN_CHECKPOINT_SECONDS="0.5")
    wait_for(lambda: (step_of(out) or 0) > 0, proc, "the first checkpoint")
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends to the foreground group
    stdout, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and stdout == ""
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("ptlearn: interrupted at step ") and "Run the same command again" in line
    stopped_at = int(line.split("step ")[1].split(";")[0])
    assert step_of(out) == stopped_at  # the checkpoint is of the last finished step
    assert not list(out.glob("checkpoint.*"))  # nothing half-written

    again = run(*GPT, "--steps", str(stopped_at + 2), "--out", str(out))
    assert f"resuming from {out / 'checkpoint'} at step {stopped_at}" in again.stderr
    assert result(again)["steps"] == stopped_at + 2


def test_ctrl_c_with_default_options_leaves_a_checkpoint(data_dir, tmp_path):
    """No option at all: the run used to print a KeyboardInterrupt traceback and leave nothing."""
    out = tmp_path / "gpt"
    proc = start("train", "gpt", "--preset", "tiny", "--time-budget", "120", "--out", str(out))
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(proc.stderr.readline, "")))
    reader.start()
    # the progress bar (stderr) shows a speed: training is under way
    wait_for(lambda: any("it/s" in c or "s/it" in c for c in chunks), proc, "the progress bar")
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=WAIT_S)
    reader.join(timeout=WAIT_S)
    stderr = "".join(chunks)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    assert (step_of(out) or 0) > 0 and "checkpoint saved in" in stderr


def test_ctrl_c_in_process_stops_after_the_step_with_a_checkpoint(capsys, monkeypatch, tmp_path):
    """The path of a terminal's Ctrl-C above, inside this process: the command's guard takes the
    first SIGINT, the run stops at the end of that step with a checkpoint of it and one line on
    stderr (none on stdout, which is for the JSON result), and Ctrl-C is Python's own again."""
    from ptlearn.runs import StopGuard

    on_step_end = StopGuard.on_step_end

    def press_ctrl_c_at_step_2(self, trainer, step, logs):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT, as the terminal sends it
        on_step_end(self, trainer, step, logs)

    monkeypatch.setattr(StopGuard, "on_step_end", press_ctrl_c_at_step_2)
    out = tmp_path / "gpt"
    with pytest.raises(SystemExit) as info:
        cli.main([*GPT, "--steps", "50", "--data", "grammar", "--out", str(out)])
    captured = capsys.readouterr()
    assert info.value.code == 130 and captured.out == ""
    assert captured.err.strip().splitlines()[-2:] == [
        "ptlearn: stopping after this step (press Ctrl-C again to abort at once)",
        f"ptlearn: interrupted at step 2; checkpoint saved in {out / 'checkpoint'}. Run the same "
        "command again to continue (or add --no-resume to start over).",
    ]
    assert step_of(out) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_before_training_starts_is_one_line(capsys, monkeypatch, tmp_path):
    import ptlearn.recipes

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the corpus is read and the tokenizer trained

    monkeypatch.setattr(ptlearn.recipes, "build", interrupted)
    with pytest.raises(SystemExit) as info:
        cli.main([*GPT, "--steps", "2", "--out", str(tmp_path / "gpt")])
    assert info.value.code == 130
    assert capsys.readouterr().err.strip() == (
        "ptlearn: interrupted before training started; nothing was written."
    )
    assert not (tmp_path / "gpt").exists()


def test_a_second_ctrl_c_during_training_says_what_was_kept(capsys, monkeypatch, tmp_path):
    import ptlearn.training

    def second_ctrl_c(self, steps=None):
        raise KeyboardInterrupt  # the guard re-raises the second Ctrl-C in the middle of a step

    monkeypatch.setattr(ptlearn.training.Trainer, "fit", second_ctrl_c)
    with pytest.raises(SystemExit) as info:
        cli.main([*GPT, "--steps", "2", "--data", "grammar", "--out", str(tmp_path / "gpt")])
    assert info.value.code == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("ptlearn: aborted at once by a second Ctrl-C during step 1;"), err
    assert "nothing was written" not in err and "Run the same command again" in err


def test_a_killed_default_run_resumes_instead_of_restarting(data_dir, tmp_path):
    """SIGKILL (OOM killer, closed laptop) after some training: the default time-based
    checkpoint means the re-run finishes the rest (the README's promise), not from zero."""
    out = tmp_path / "gpt"
    proc = start(*GPT, "--time-budget", "120", "--out", str(out), PTLEARN_CHECKPOINT_SECONDS="0.5")
    wait_for(lambda: (step_of(out) or 0) > 0, proc, "a time-based checkpoint")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=WAIT_S)
    saved = step_of(out)
    again = run(*GPT, "--steps", str(saved + 3), "--out", str(out))
    assert result(again)["resumed_from_step"] == saved > 0
    assert result(again)["steps"] == saved + 3


def test_a_crash_between_the_two_renames_is_recovered_before_resuming(data_dir, tmp_path):
    out = tmp_path / "gpt"
    assert result(run(*GPT, "--steps", "4", "--out", str(out)))["steps"] == 4
    os.replace(out / "checkpoint", out / "checkpoint.old-0123abcd")  # killed between renames
    again = result(run(*GPT, "--steps", "6", "--out", str(out)))
    assert again["resumed_from_step"] == 4 and again["steps"] == 6  # used to restart from 0


# --- a run folder knows what it holds ----------------------------------------------------------

BERT = ("train", "bert", "--preset", "tiny", "--steps", "2", "--no-progress")


def test_another_corpus_in_the_same_out_is_refused(data_dir, tmp_path):
    out = tmp_path / "bert"
    assert result(run(*BERT, "--data", "grammar", "--out", str(out)))["steps"] == 2
    tokenizer = (out / "tokenizer.json").read_bytes()
    line = error_line(run(*BERT, "--data", "tinyshakespeare", "--out", str(out)))
    assert "holds another run" in line and "data grammar (now tinyshakespeare)" in line
    assert "--no-resume" in line and "another --out" in line
    assert (out / "tokenizer.json").read_bytes() == tokenizer  # the vocabulary is untouched
    fresh = result(run(*BERT, "--data", "tinyshakespeare", "--out", str(out), "--no-resume"))
    assert fresh["resumed_from_step"] is None and fresh["data"] == "tinyshakespeare"


def test_another_seed_or_preset_in_the_same_out_is_refused(capsys, tmp_path):
    out = str(tmp_path / "gpt")
    assert cli.main([*GPT, "--steps", "2", "--data", "grammar", "--out", out]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli.main([*GPT, "--steps", "3", "--data", "grammar", "--out", out, "--seed", "1"])
    assert info.value.code == 2 and "seed 0 (now 1)" in capsys.readouterr().err


def test_a_runs_identity_is_recorded_in_its_checkpoint(capsys, tmp_path):
    out = tmp_path / "gpt"
    assert cli.main([*GPT, "--steps", "2", "--data", "grammar", "--out", str(out)]) == 0
    run_meta = json.loads((out / "checkpoint" / "meta.json").read_text())["run"]
    assert {"model", "data", "data_sha256", "tokenizer_sha256", "preset", "seed", "from"} <= set(
        run_meta
    )
    assert (run_meta["data"], run_meta["preset"], run_meta["seed"]) == ("grammar", "tiny", 0)


def test_finetune_from_another_source_does_not_resume_the_first(capsys, tmp_path):
    a, b, ft = tmp_path / "a", tmp_path / "b", tmp_path / "ft"
    for folder, seed in ((a, "0"), (b, "1")):
        args = [*BERT, "--data", "grammar", "--out", str(folder), "--seed", seed]
        assert cli.main(args) == 0
    capsys.readouterr()
    tune = ["finetune", "bert", "--data", "grammar", "--preset", "tiny", "--steps", "2"]
    assert cli.main([*tune, "--from", str(a), "--out", str(ft), "--no-progress"]) == 0
    capsys.readouterr()
    done = run(*tune, "--from", str(b), "--out", str(ft), "--no-progress")
    line = error_line(done)  # used to resume A's fine-tune while reporting B
    assert f"--from source {a.resolve()} (now {b.resolve()})" in line


def test_a_users_tokenizer_json_is_never_overwritten(data_dir, tmp_path):
    out = tmp_path / "my-project"
    out.mkdir()
    (out / "tokenizer.json").write_text('{"mine": true}')
    line = error_line(run(*GPT, "--steps", "2", "--out", str(out)))
    assert f"{out / 'tokenizer.json'} was not written by a ptlearn run" in line
    assert (out / "tokenizer.json").read_text() == '{"mine": true}'
    assert [p.name for p in out.iterdir()] == ["tokenizer.json"]  # the folder is as it was


def test_two_runs_on_one_out_second_is_refused(data_dir, tmp_path):
    out = tmp_path / "gpt"
    first = start(*GPT, "--time-budget", "120", "--out", str(out), PTLEARN_CHECKPOINT_SECONDS="0.5")
    try:
        wait_for(lambda: (step_of(out) or 0) > 0, first, "the first run's checkpoint")
        line = error_line(run(*GPT, "--steps", "3", "--out", str(out)))
        assert f"{out} is in use by another ptlearn run (pid {first.pid})" in line
    finally:
        os.killpg(first.pid, signal.SIGINT)
        first.communicate(timeout=WAIT_S)
    assert first.returncode == 130  # and the first run was not disturbed: it stops cleanly
    saved = step_of(out)
    done = run(*GPT, "--steps", str(saved + 1), "--out", str(out))  # the lock went with it
    assert result(done)["resumed_from_step"] == saved


# --- files in the way, read-only and full disks ------------------------------------------------


def test_out_pointing_at_a_file_is_one_line(tmp_path):
    file = tmp_path / "results.txt"
    file.write_text("my notes")
    line = error_line(run(*GPT, "--steps", "2", "--out", str(file)))
    assert f"--out {file} is a file" in line and file.read_text() == "my notes"


def test_out_below_a_file_is_one_line(capsys, tmp_path):
    (tmp_path / "results.txt").write_text("my notes")
    with pytest.raises(SystemExit) as info:
        cli.main([*GPT, "--steps", "2", "--out", str(tmp_path / "results.txt" / "run")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "a file is in the way" in err and "Traceback" not in err


@pytest.fixture
def mounted(tmp_path):
    """Mount a small tmpfs (root only): ``mounted("ro")`` read-only, ``mounted("size=..")``."""
    points = []

    def mount(options: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("root bypasses permissions and a tmpfs mount needs root: run as root")
        point = tmp_path / f"mnt{len(points)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)])
        if done.returncode != 0:
            pytest.skip("mount -t tmpfs is not allowed here")
        points.append(point)
        return point

    yield mount
    for point in points:
        subprocess.run(["umount", str(point)], check=False)


def test_out_in_a_read_only_folder_is_one_line(mounted):
    folder = mounted("ro,size=1m")
    line = error_line(run(*GPT, "--steps", "2", "--out", str(folder / "run")))
    assert f"Cannot create the run folder {folder / 'run'}" in line and "read-only" in line


def test_course_into_a_read_only_folder_is_one_line(mounted):
    folder = mounted("ro,size=1m")
    line = error_line(run("course", str(folder / "course"), "--no-launch"))
    assert str(folder / "course") in line and "read-only" in line


def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_partial_folder(
    data_dir, mounted
):
    disk = mounted("size=600k")
    out = disk / "run"
    (disk / "filler").write_bytes(b"\0" * 420_000)  # room for the run files, not a checkpoint
    line = error_line(run(*GPT, "--steps", "2", "--out", str(out)))
    assert f"Cannot write the checkpoint {out / 'checkpoint'}" in line and "disk is full" in line
    assert not list(out.glob("checkpoint*"))  # no checkpoint.tmp-* left behind


def test_course_copy_on_a_full_disk_leaves_no_half_notebook(mounted, monkeypatch, tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("01_a", "02_b"):
        (source / f"{name}.ipynb").write_bytes(b"x" * 300_000)
    monkeypatch.setattr(cli, "course_dir", lambda: source)
    disk = mounted("size=400k")
    with pytest.raises(SystemExit) as info:
        cli.main(["course", str(disk / "course"), "--no-launch"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "disk is full" in err and "Traceback" not in err
    # a truncated copy would be "kept" as the learner's edits forever after
    assert [p.name for p in (disk / "course").iterdir()] == ["01_a.ipynb"]


# --- damaged --from folders -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "bert"
    assert cli.main([*BERT, "--data", "grammar", "--out", str(out)]) == 0
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".ptlearn.lock"))
    return dst


FINETUNE = ("finetune", "bert", "--data", "grammar", "--preset", "tiny", "--steps", "2")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "tokenizer.json").write_text("garbage"), "tokenizer.json is not a"),
        (
            lambda d: (d / "checkpoint" / "meta.json").write_text("[]"),
            "meta.json holds a JSON list",
        ),
        (
            lambda d: (d / "checkpoint" / "model.safetensors").write_bytes(b"xx"),
            "model.safetensors",
        ),
    ],
    ids=["garbage-tokenizer", "meta-not-an-object", "truncated-weights"],
)
def test_a_damaged_from_folder_is_one_line(pretrained, tmp_path, damage, message):
    source = _copy(pretrained, tmp_path / "src")
    damage(source)
    line = error_line(run(*FINETUNE, "--from", str(source), "--out", str(tmp_path / "ft")))
    assert message in line and str(source) in line


# --- numbers that make no sense ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--steps", "-5"),  # used to blame TrainConfig.warmup_steps=-1
        ("--steps", "0"),
        ("--time-budget", "-1"),
        ("--time-budget", "nan"),
        ("--threads", "0"),  # used to be ignored silently
        ("--nproc", "0"),  # used to run one process silently
        ("--eval-every", "0"),
        ("--checkpoint-every", "-1"),
    ],
)
def test_a_count_or_budget_that_is_not_positive_names_its_option(capsys, option, value):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "gpt", "--preset", "tiny", option, value])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert f"argument {option}: must be a" in err and f"> 0, got '{value}'" in err


def test_from_a_folder_without_a_checkpoint_says_what_from_needs(capsys, tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(SystemExit):
        cli.main([*FINETUNE, "--from", str(tmp_path), "--out", str(tmp_path / "ft")])
    err = capsys.readouterr().err
    assert f"--from {tmp_path} has no checkpoint: pass the --out folder of a" in err


def test_an_sst2_file_holding_only_its_header_is_one_line(capsys, tmp_path, monkeypatch):
    folder = tmp_path / "data" / "sst2"
    folder.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text("label\tsentence\n")  # an export that lost its rows
    monkeypatch.setenv("PTLEARN_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as info:
        cli.main(
            ["finetune", "bert", "--preset", "tiny", "--steps", "1", "--out", str(tmp_path / "f")]
        )
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert f"{folder / 'train.tsv'} holds only its header" in err


def test_a_latin1_corpus_is_one_line_naming_it(capsys, tmp_path, monkeypatch):
    folder = tmp_path / "data" / "tinyshakespeare"
    folder.mkdir(parents=True)
    (folder / "input.txt").write_bytes("Ros\xe9 and Juliet\n".encode("latin-1") * 200)
    monkeypatch.setenv("PTLEARN_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as info:
        cli.main([*GPT, "--steps", "1", "--out", str(tmp_path / "g")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert f"{folder / 'input.txt'} is not UTF-8 text" in err and "save it again as UTF-8" in err


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_resuming_keeps_the_runs_own_vocabulary(capsys, tmp_path, command):
    """WordPiece training breaks ties differently from run to run: a resumed run used to train a
    new vocabulary (other ids for the same pieces) and overwrite tokenizer.json with it."""
    from ptlearn.tokenization import load_tokenizer

    out = tmp_path / "run"
    args = [command, "bert", "--data", "grammar", "--preset", "tiny", "--no-progress"]
    assert cli.main([*args, "--steps", "2", "--out", str(out)]) == 0
    vocab = load_tokenizer(out / "tokenizer.json").tokenizer.get_vocab()
    capsys.readouterr()
    assert cli.main([*args, "--steps", "3", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["resumed_from_step"] == 2
    assert load_tokenizer(out / "tokenizer.json").tokenizer.get_vocab() == vocab
