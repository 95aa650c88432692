"""The ``ptlearn`` command: a real time-budgeted run and its resume (in a subprocess, as a user
runs it), in-process runs of the other recipes, clear errors, and the course copier."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers_train import one_thread  # noqa: F401  (autouse fixture)

from ptlearn import cli

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> tuple[dict, str]:
    """Run ``python -m ptlearn.cli ARGS`` on one thread; return the final JSON line and stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "ptlearn.cli", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must be one JSON line, got {proc.stdout!r}"
    return json.loads(lines[0]), proc.stderr


def main_json(capsys, *args: str) -> dict:
    assert cli.main([*args, "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_gpt_with_a_time_budget_then_resume(data_dir, tmp_path):
    out = tmp_path / "gpt"
    first, _ = run_cli("train", "gpt", "--preset", "tiny", "--time-budget", "3", "--out", str(out))
    assert {"val_loss", "steps", "seconds", "tokens_per_s", "model", "data", "device"} <= set(first)
    assert (first["model"], first["data"], first["device"]) == ("gpt", "tinyshakespeare", "cpu")
    assert first["steps"] > 0 and first["seconds"] >= 3 and first["tokens_per_s"] > 0
    assert first["val_loss"] < 4.5 and first["resumed_from_step"] is None
    assert (out / "checkpoint" / "model.safetensors").is_file()
    assert (out / "tokenizer.json").is_file() and (out / "recipe.json").is_file()

    second, err = run_cli(
        "train", "gpt", "--preset", "tiny", "--time-budget", "5", "--out", str(out)
    )
    assert "resuming" in err
    assert second["resumed_from_step"] == first["steps"] and second["steps"] > first["steps"]
    assert second["seconds"] >= 5


def test_finetune_and_vit_report_accuracy(capsys, tmp_path):
    result = main_json(
        capsys, "finetune", "bert", "--data", "grammar", "--preset", "tiny", "--steps", "5",
        "--out", str(tmp_path / "ft"),
    )  # fmt: skip
    assert 0.0 <= result["val_accuracy"] <= 1.0 and result["steps"] == 5
    result = main_json(capsys, "train", "vit", "--preset", "tiny", "--steps", "3", "--out", str(tmp_path / "vit"))  # fmt: skip
    assert result["data"] == "digits" and "val_accuracy" in result
    assert result["tokens_per_s"] == pytest.approx(result["images_per_s"] * 17, rel=0.01)


def test_steps_continue_from_the_checkpoint_and_refuse_another_shape(capsys, tmp_path):
    out = str(tmp_path / "bert")
    args = ["train", "bert", "--data", "grammar", "--preset", "tiny", "--out", out]
    assert main_json(capsys, *args, "--steps", "3")["steps"] == 3
    again = main_json(capsys, *args, "--steps", "6")
    assert (again["resumed_from_step"], again["steps"]) == (3, 6)
    assert 0.0 <= again["val_mlm_accuracy"] <= 1.0
    with pytest.raises(SystemExit):
        cli.main(["train", "bert", "--data", "grammar", "--preset", "cpu", "--out", out])
    assert "--no-resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "gpt", "--data", "mnist"], "choose one of: tinyshakespeare, grammar"),
        (["train", "vit", "--data", "cifar"], "choose one of: digits"),
        (["finetune", "bert", "--data", "imdb"], "choose one of: sst2, ag_news, grammar"),
        (
            ["train", "gpt", "--preset", "huge"],
            "choose one of: cpu, cpu-adamw, gpu, reference, tiny",
        ),
        (["finetune", "bert", "--data", "grammar", "--from", "/no/such/run"], "tokenizer.json"),
    ],
)
def test_bad_arguments_say_what_is_valid(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_a_gpu_says_so(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "gpt", "--device", "cuda"])
    assert "no CUDA GPU" in capsys.readouterr().err


def test_unknown_model_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "t5"])
    assert "invalid choice: 't5'" in capsys.readouterr().err


def test_every_bench_name_has_its_script():
    for name, script in cli.BENCHMARKS.items():
        assert (cli.benchmarks_dir() / script).is_file(), name


def _notebooks(folder: Path, **contents: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        (folder / f"{name}.ipynb").write_text(text)
    return folder


def test_course_copies_notebooks_but_keeps_a_learners_edits(tmp_path, monkeypatch, capsys):
    source = _notebooks(tmp_path / "src", **{"01_attention": "v1", "02_transformer": "v1"})
    monkeypatch.setattr(cli, "course_dir", lambda: source)
    target = tmp_path / "course"
    assert cli.main(["course", str(target), "--no-launch"]) == 0
    assert sorted(p.name for p in target.glob("*.ipynb")) == ["01_attention.ipynb", "02_transformer.ipynb"]  # fmt: skip
    (target / "01_attention.ipynb").write_text("my answers")  # the learner's work
    _notebooks(source, **{"01_attention": "v2", "03_tokenizers": "v1"})  # a course update
    assert cli.main(["course", str(target), "--no-launch"]) == 0
    err = capsys.readouterr().err
    assert (target / "01_attention.ipynb").read_text() == "my answers"
    assert "kept your edited" in err and "01_attention.ipynb" in err
    assert (target / "03_tokenizers.ipynb").read_text() == "v1"


def test_course_dir_prefers_the_installed_package_data(tmp_path, monkeypatch):
    wheel = _notebooks(tmp_path / "ptlearn" / "course", **{"01_attention": "x"})
    monkeypatch.setattr(cli.resources, "files", lambda package: tmp_path / package)
    assert cli.course_dir() == wheel


def test_course_dir_falls_back_to_the_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.resources, "files", lambda package: tmp_path / "empty")
    checkout = ROOT / "notebooks"
    if any(checkout.glob("*.ipynb")):
        assert cli.course_dir() == checkout
    else:
        with pytest.raises(cli.CLIError, match="No course notebooks"):
            cli.course_dir()
