"""The ``ptlearn`` command: train, fine-tune, benchmark, and start the course.

::

    ptlearn train gpt                                   # char-level Tiny Shakespeare, 90 s on a CPU
    ptlearn train vit --data digits --time-budget 60    # 8x8 digits, >= 98% test accuracy
    ptlearn train bert --data grammar --out runs/bert   # MLM + NSP with a WordPiece tokenizer
    ptlearn finetune bert --data sst2 --from runs/bert  # a classifier on the pretrained encoder
    ptlearn train gpt --nproc 2                         # the same run on 2 processes (DDP)
    ptlearn bench throughput                            # ptlearn vs HF transformers
    ptlearn course                                      # copy the notebooks, start JupyterLab
    ptlearn course --student handout/                   # the notebooks without their solutions
    ptlearn grade submissions/                          # run the exercise checkers, per learner
    ptlearn site                                        # the course as a website, in site/

``train`` and ``finetune`` show a progress bar (stderr), write checkpoints into ``--out``
(default ``runs/<model>-<data>``), continue from the checkpoint there unless ``--no-resume``,
and end with one JSON line of final metrics on stdout, for scripts to read.

A budget (``--time-budget``/``--steps``) is the run's total, counted over resumed runs: run
again with the same budget after an interruption and it finishes the rest; give a larger one to
train longer (the cosine schedule is then stretched to the new end).

However a run stops, the rest is not lost: Ctrl-C stops after the running step with a checkpoint
(exit status 130, one line saying how to continue); a checkpoint is written every minute of
training (``--checkpoint-every`` for every N steps instead), so a kill loses at most that; a
checkpoint left aside by a crash mid-swap is recovered. A run folder is locked while a run uses
it, records what defines its run (data, tokenizer, ``--from``, preset, seed: see
:mod:`ptlearn.runs`) and is resumed only by the same run.

Why this module is longer than 350 lines: it is the whole command line (train, finetune, bench,
course, doctor, grade, site), each subcommand a short function over the package; the one-line
error handling that turns every known failure into a sentence lives here once for all of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import json
import os
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

BENCHMARKS = {
    "attention": "attention_scaling.py",
    "kv-cache": "kv_cache.py",
    "throughput": "throughput.py",
    "time-to-quality": "time_to_quality.py",
    "vit-digits": "vit_digits.py",
    "pretrain-bert": "pretrain_bert.py",
    "ddp": "ddp_scaling.py",
    "all": "run_all.sh",
}


class CLIError(Exception):
    """A mistake in the command line or its inputs: printed as one message, exit status 2."""


class Interrupted(Exception):
    """Ctrl-C stopped a run cleanly: printed as one message, exit status 130."""


# --- train / finetune -------------------------------------------------------------------------


def _check_device(device: str) -> None:
    from .device import get_device

    if device != "auto":
        get_device(device)  # ValueError with the reason when CUDA is not there


def _budget(config, args):
    """The TrainConfig with the command line's budget, output folder and seed."""
    changes = {"out_dir": str(args.out), "seed": args.seed, "device": args.device}
    if args.time_budget is not None or args.steps is not None:
        changes.update(time_budget=args.time_budget, max_steps=args.steps)
    steps = changes.get("max_steps", config.max_steps)
    if steps is not None and config.warmup_steps > steps:
        changes["warmup_steps"] = steps // 10  # a short run still warms up, briefly
    for name in ("eval_every", "checkpoint_every"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.no_progress:
        changes["progress"] = False
    if args.compile:
        changes["compile"] = True
    return dataclasses.replace(config, **changes)


def _check_resumable(out: Path, model) -> None:
    """Refuse to resume a checkpoint of another shape (a different --preset or model)."""
    from .checkpoint import read_meta, to_jsonable

    meta = read_meta(out)
    if meta.get("model_config") != to_jsonable(model.config):
        raise CLIError(
            f"{out} holds a checkpoint of a different model ({meta.get('model_class')}, "
            f"{meta.get('model_config')}). Pass --no-resume to train from scratch there, or "
            f"choose another --out."
        )


def _summary(trainer, recipe, wall: float, resumed_from: int | None) -> dict:
    """The final JSON line: validation metrics, amount of training, speed, and what ran."""
    last = trainer.history.last("eval") or {}
    state = trainer.state
    result = {"val_loss": last.get("loss")}
    result.update({f"val_{k}": v for k, v in last.items() if k not in ("step", "split", "loss")})
    seconds = max(state.elapsed, 1e-9)
    result.update(steps=state.step, seconds=round(state.elapsed, 2))
    if recipe.info["model"] == "vit":
        per_image = recipe.model.config.n_patches + 1  # patch tokens plus [CLS]
        result["images_per_s"] = round(state.tokens_seen / seconds, 1)
        result["tokens_per_s"] = round(state.tokens_seen * per_image / seconds, 1)
    else:
        result["tokens_per_s"] = round(state.tokens_seen / seconds, 1)
    result.update(recipe.info, device=str(trainer.device), world_size=trainer.world_size)
    result.update(resumed_from_step=resumed_from, wall_seconds=round(wall, 2))
    result["checkpoint"] = str(trainer.last_checkpoint) if trainer.last_checkpoint else None
    return result


def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def make_folder(path: Path, label: str, purpose: str) -> None:
    """Create ``path`` (and its parents) or raise one CLIError: a file in the way, or no permission.
    ``label`` prefixes the path in messages (``"--out "``), ``purpose`` is ``"the run"`` etc."""
    from .checkpoint import write_error

    if path.exists() and not path.is_dir():
        raise CLIError(f"{label}{path} is a file, not a folder: choose a folder for {purpose}.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(str(write_error(err, path, f"create {purpose} folder"))) from err


def _prepare_out(out: Path):
    """Create ``out`` and take its lock (rank 0); one-line errors for a file or no permission."""
    from .runs import FolderLock, RunFolderError

    make_folder(out, "--out ", "the run")
    if not os.access(out, os.W_OK | os.X_OK):
        raise CLIError(f"Cannot write into --out {out}: permission denied; choose another folder.")
    try:
        return FolderLock(out).acquire()
    except RunFolderError as err:
        raise CLIError(str(err)) from err


def _check_run_folder(out: Path, identity: dict, resume: bool) -> None:
    """Refuse to resume another experiment's checkpoint, or to overwrite files ptlearn did not
    write (a user's tokenizer.json in an unrelated folder)."""
    from .runs import LOCK_FILE, foreign_files, identity_difference, recorded_identity

    foreign = foreign_files(out)
    if foreign:
        (out / LOCK_FILE).unlink(missing_ok=True)  # leave the user's folder as it was
        names = ", ".join(str(f) for f in foreign)
        raise CLIError(
            f"{names} was not written by a ptlearn run and would be overwritten: move it away, "
            f"or choose another --out."
        )
    if resume:
        difference = identity_difference(recorded_identity(out), identity)
        if difference:
            raise CLIError(
                f"{out} holds another run (different {difference}): pass --no-resume to start "
                f"over there (its checkpoint will be replaced), or choose another --out."
            )


def run_recipe(recipe, args) -> dict:
    """Train ``recipe`` as the command line says; returns the summary (printed by rank 0).

    Before training: the run folder is locked (one run per folder), a checkpoint left between
    the two renames of a swap is recovered, and a checkpoint is resumed only if it belongs to
    this same run (:mod:`ptlearn.runs`). During training: a checkpoint every minute (unless
    ``--checkpoint-every``), and Ctrl-C stops cleanly after the running step with a checkpoint.
    """
    import torch

    from .checkpoint import (
        CHECKPOINT_DIR,
        RUN_IDENTITY,
        StepBoundaryInterrupt,
        interrupted_message,
        recover_checkpoint,
    )
    from .recipes import save_run_files
    from .runs import RunInterrupted, StopGuard, checkpoint_seconds, run_identity
    from .training import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    config = _budget(recipe.config, args)
    out = Path(args.out)
    rank0 = _is_rank0()
    lock = _prepare_out(out) if rank0 else None
    try:
        recover_checkpoint(out / CHECKPOINT_DIR)  # every rank: all must decide to resume alike
        resume = not args.no_resume and (out / CHECKPOINT_DIR).exists()
        if resume:
            _check_resumable(out, recipe.model)
        identity = run_identity(recipe.info, recipe.model.config, recipe.tokenizer, args.seed)
        if rank0:
            _check_run_folder(out, identity, resume)
        RUN_IDENTITY[(out / CHECKPOINT_DIR).resolve()] = identity
        trainer = Trainer(
            recipe.model, config, recipe.train_data, recipe.eval_data,
            collate_fn=recipe.collate_fn, metrics=recipe.metrics, resume=resume,
        )  # fmt: skip
        # under DDP, Ctrl-C stays the default (every rank must stop alike)
        ctrl_c = StepBoundaryInterrupt(enabled=trainer.world_size == 1, say=_say)
        seconds = None if args.checkpoint_every else checkpoint_seconds()
        trainer.callbacks.append(StopGuard(seconds, ctrl_c))
        resumed_from = trainer.state.step if resume else None
        if trainer.rank == 0:
            save_run_files(recipe, out)
            if resume:
                _say(f"resuming from {out / CHECKPOINT_DIR} at step {resumed_from}")
        try:
            with ctrl_c:
                trainer.fit()
        except RunInterrupted:
            how = "Run the same command again to continue (or add --no-resume to start over)."
            path = trainer.save_checkpoint()
            raise Interrupted(interrupted_message(trainer.state.step, path, how)) from None
        except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, mid-step, nothing saved now
            last = trainer.last_checkpoint
            kept = (
                f"the last checkpoint, {last}, is kept"
                if last
                else "nothing was saved in this run (an earlier checkpoint there is untouched)"
            )
            raise Interrupted(
                f"aborted at once by a second Ctrl-C during step {trainer.state.step + 1}; {kept}. "
                "Run the same command again to continue from it."
            ) from None
        result = _summary(trainer, recipe, time.perf_counter() - start, resumed_from)
        if trainer.rank == 0:
            print(json.dumps(result), flush=True)
        return result
    finally:
        if lock is not None:
            lock.release()


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` minus ``--nproc N``: each torchrun worker then runs the command as one process
    (and torchrun's own parser would take ``--nproc`` for an abbreviation of its options)."""
    kept, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--nproc="):
            skip = False
        elif arg == "--nproc":
            skip = True
        else:
            kept.append(arg)
    return kept


def _relaunch(argv: list[str], nproc: int) -> int:
    """Run this same command on ``nproc`` processes under torchrun (DDP; gloo on CPUs)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", "-m", "ptlearn.cli", *_without_nproc(argv)]
    _say("launching: " + " ".join(cmd[1:]))
    return subprocess.call(cmd)


def _resumed_tokenizer(args, data: str):
    """The tokenizer of the checkpoint this run will resume (None: train one as usual)."""
    from .checkpoint import CHECKPOINT_DIR, recover_checkpoint
    from .runs import saved_tokenizer

    out = Path(args.out)
    if args.no_resume or not out.is_dir():
        return None
    recover_checkpoint(out / CHECKPOINT_DIR)
    return saved_tokenizer(out, data)


def cmd_train(args, argv) -> int:
    from .recipes import DATA, build

    if args.nproc > 1:
        return _relaunch(argv, args.nproc)
    _check_device(args.device)
    data = args.data or DATA[args.model][0]
    args.out = args.out or Path("runs") / f"{args.model}-{data}"
    tokenizer = _resumed_tokenizer(args, data) if args.model in ("bert", "albert") else None
    recipe = build(args.model, data, args.preset, args.device, args.seed, tokenizer=tokenizer)
    run_recipe(recipe, args)
    return 0


def _check_from(folder: Path, model: str) -> None:
    """--from must be the --out folder of a `ptlearn train` run: checkpoint/ and tokenizer.json."""
    from .checkpoint import CHECKPOINT_DIR, recover_checkpoint

    if folder.is_dir():
        recover_checkpoint(folder / CHECKPOINT_DIR)
    missing = [name for name in (CHECKPOINT_DIR, "tokenizer.json") if not (folder / name).exists()]
    if missing:
        raise CLIError(
            f"--from {folder} has no {' and no '.join(missing)}: pass the --out folder of a "
            f"`ptlearn train {model}` run."
        )


def cmd_finetune(args, argv) -> int:
    from .recipes import build_finetune

    if args.nproc > 1:
        return _relaunch(argv, args.nproc)
    _check_device(args.device)
    args.out = args.out or Path("runs") / f"{args.model}-{args.data}-finetune"
    if args.from_dir and Path(args.from_dir).resolve() == Path(args.out).resolve():
        raise CLIError(
            "--from and --out are the same folder: the fine-tuning run would overwrite it."
        )
    if args.from_dir:
        _check_from(Path(args.from_dir), args.model)
    tokenizer = None if args.from_dir else _resumed_tokenizer(args, args.data)
    recipe = build_finetune(
        args.model, args.data, args.preset, args.device, args.seed, from_dir=args.from_dir,
        tokenizer=tokenizer,
    )  # fmt: skip
    run_recipe(recipe, args)
    return 0


# --- bench --------------------------------------------------------------------------------------


def benchmarks_dir() -> Path:
    """``benchmarks/`` of a source checkout (the scripts are not part of the wheel)."""
    import ptlearn

    folder = Path(ptlearn.__file__).resolve().parents[1] / "benchmarks"
    if not folder.is_dir():
        raise CLIError(
            "The benchmark scripts live in the source repository, not in the installed package: "
            "clone the repository and `pip install -e .` there to run `ptlearn bench`."
        )
    return folder


def cmd_bench(args, argv) -> int:
    script = benchmarks_dir() / BENCHMARKS[args.name]
    if not script.is_file():
        raise CLIError(f"{script} is missing from this checkout.")
    runner = ["bash"] if script.suffix == ".sh" else [sys.executable]
    _say("running: " + " ".join([*runner, str(script), *args.args]))
    return subprocess.call([*runner, str(script), *args.args], cwd=script.parents[1])


# --- course -------------------------------------------------------------------------------------


def course_dir() -> Path:
    """Where the course notebooks are: ``ptlearn/course`` in a wheel (pyproject ships
    ``notebooks/`` there), else ``notebooks/`` beside the package in a source checkout."""
    import ptlearn

    candidates = []
    try:
        candidates.append(Path(str(resources.files("ptlearn") / "course")))
    except (ModuleNotFoundError, TypeError):
        pass
    candidates.append(Path(ptlearn.__file__).resolve().parents[1] / "notebooks")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.ipynb")):
            return folder
    raise CLIError(f"No course notebooks found (looked in {', '.join(map(str, candidates))}).")


def copy_course(source: Path, target: Path) -> dict[str, list[str]]:
    """Copy every notebook of ``source`` into ``target``; never overwrite a learner's edits.

    Returns the file names by outcome: ``copied`` (new), ``unchanged`` (already identical) and
    ``kept`` (present with different content: the learner's version stays).
    """
    from .checkpoint import atomic_write_bytes

    make_folder(target, "", "the course")
    outcome = {"copied": [], "unchanged": [], "kept": []}
    for notebook in sorted(source.glob("*.ipynb")):
        dest = target / notebook.name
        if not dest.exists():
            # atomic: a half-copied notebook (disk full) would later pass for the learner's edits
            try:
                atomic_write_bytes(dest, notebook.read_bytes(), fsync=False)
            except OSError as err:
                raise CLIError(
                    f"{err} Nothing half-written was left; {len(outcome['copied'])} notebook(s) "
                    f"were copied before."
                ) from err
            outcome["copied"].append(notebook.name)
        elif filecmp.cmp(notebook, dest, shallow=False):
            outcome["unchanged"].append(notebook.name)
        else:
            outcome["kept"].append(notebook.name)
    return outcome


def cmd_course(args, argv) -> int:
    if args.student:
        return write_student_course(course_dir(), Path(args.student))
    target = Path(args.dir)
    outcome = copy_course(course_dir(), target)
    _say(f"{len(outcome['copied'])} notebook(s) copied into {target}")
    for name in outcome["kept"]:
        _say(f"kept your edited {target / name} (not overwritten; delete it to get a fresh copy)")
    if args.no_launch:
        return 0
    cmd = ["jupyter", "lab", str(target)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # JupyterLab refuses to run as root without it
    _say("starting: " + " ".join(cmd))
    try:
        return subprocess.call(cmd)
    except FileNotFoundError as err:
        raise CLIError("JupyterLab is not installed: pip install jupyterlab") from err


def write_student_course(source: Path, target: Path) -> int:
    """The course for learners to be handed: every notebook without its collapsed Solution and
    Answer blocks (hints stay) and without outputs (:func:`ptlearn.grade.student_notebook`)."""
    from .checkpoint import atomic_write_bytes
    from .grade import student_notebook

    if target.exists() and not target.is_dir():
        raise CLIError(f"{target} is a file, not a folder: choose a folder for the course.")
    target.mkdir(parents=True, exist_ok=True)
    notebooks = sorted(source.glob("*.ipynb"))
    for notebook in notebooks:
        nb = student_notebook(json.loads(notebook.read_text(encoding="utf-8")))
        text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        atomic_write_bytes(target / notebook.name, text.encode("utf-8"), fsync=False)
    _say(f"{len(notebooks)} notebook(s) without solutions written into {target}")
    return 0


def cmd_grade(args, argv) -> int:
    from .grade import grade, summary, write_csv

    rows = grade(args.paths, timeout=args.timeout, echo=_say)
    if not rows:
        raise CLIError(f"No exercises found in {', '.join(args.paths)}.")
    write_csv(rows, args.csv)
    print(summary(rows))
    _say(f"{len(rows)} exercise verdict(s) written to {args.csv}")
    return 0


# --- the parser ---------------------------------------------------------------------------------


def _positive(kind):
    """An argparse type: a number > 0 (a 0 or negative budget, thread or process count is
    refused at the command line, naming the option, not deep inside the config)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or value != value or value == float("inf"):
            what = "a whole number" if kind is int else "a number of seconds"
            raise argparse.ArgumentTypeError(f"must be {what} > 0, got {text!r}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--time-budget", type=_positive(float), help="seconds of training (total over resumes)"
    )
    p.add_argument("--steps", type=_positive(int), help="optimizer steps (total over resumes)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--out", type=Path, help="run folder (default: runs/<model>-<data>)")
    p.add_argument(
        "--preset", help="cpu, gpu, tiny; gpt also cpu-adamw (default: gpu on CUDA, else cpu)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nproc", type=_positive(int), default=1, help="processes (DDP under torchrun)")
    p.add_argument("--threads", type=_positive(int), help="torch CPU threads per process")
    p.add_argument("--no-resume", action="store_true", help="ignore a checkpoint in --out")
    p.add_argument(
        "--eval-every", type=_positive(int), help="steps between evaluations (default: at the end)"
    )
    p.add_argument(
        "--checkpoint-every", type=_positive(int), help="steps between checkpoints (and at the end)"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPUs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from .recipes import FINETUNE_DATA, RECIPES

    parser = argparse.ArgumentParser(prog="ptlearn", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="pretrain a model on a corpus")
    train.add_argument("model", choices=list(RECIPES))
    train.add_argument(
        "--data", help="tinyshakespeare or grammar (gpt, bert, albert); digits (vit)"
    )
    _add_run_options(train)
    train.set_defaults(func=cmd_train)
    finetune = sub.add_parser("finetune", help="train a sentence classifier")
    finetune.add_argument("model", choices=["bert", "albert"])
    finetune.add_argument("--data", default="sst2", help=", ".join(FINETUNE_DATA))
    finetune.add_argument("--from", dest="from_dir", help="a `ptlearn train` --out folder")
    _add_run_options(finetune)
    finetune.set_defaults(func=cmd_finetune)
    bench = sub.add_parser("bench", help="run a benchmark script (source checkout only)")
    bench.add_argument("name", choices=list(BENCHMARKS))
    bench.add_argument("args", nargs=argparse.REMAINDER, help="passed on to the script")
    bench.set_defaults(func=cmd_bench)
    course = sub.add_parser("course", help="copy the course notebooks and start JupyterLab")
    course.add_argument("dir", nargs="?", default="ptlearn-course")
    course.add_argument("--no-launch", action="store_true", help="copy only; do not start Jupyter")
    course.add_argument(
        "--student", metavar="DIR", help="write the notebooks without their solutions into DIR"
    )
    course.set_defaults(func=cmd_course)
    grade_p = sub.add_parser("grade", help="run the exercise checkers on learners' notebooks")
    grade_p.add_argument("paths", nargs="+", help="notebooks, or folders of them (one per learner)")
    grade_p.add_argument("--csv", default="grades.csv", help="the table to write")
    grade_p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per exercise (default 120)"
    )
    grade_p.set_defaults(func=cmd_grade)
    doctor_p = sub.add_parser("doctor", help="what this machine gives the course, and fixes")
    doctor_p.set_defaults(func=lambda args, argv: __import__("ptlearn.doctor").doctor.main())
    from .site import add_parser as add_site_parser  # `ptlearn site`: the course as a website

    add_site_parser(sub)
    return parser


def _say(message: str) -> None:
    print(f"ptlearn: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ptlearn`` console script; returns the exit status."""
    from .data import DataNotFoundError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args, argv)
    except Interrupted as err:
        parser.exit(130, f"ptlearn: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, "ptlearn: interrupted before training started; nothing was written.\n")
    except (CLIError, ValueError, DataNotFoundError, FileNotFoundError) as err:
        parser.exit(2, f"ptlearn: error: {_one_line(err)}\n")
    except OSError as err:  # permission, disk full, a file in the way: name the path
        parser.exit(2, f"ptlearn: error: {_os_message(err)}\n")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split("\n")) if len(str(err).splitlines()) > 1 else str(err)


def _os_message(err: OSError) -> str:
    from .checkpoint import WriteError, write_error

    if isinstance(err, WriteError) or not err.filename:
        return str(err)
    return str(write_error(err, err.filename, "use"))


if __name__ == "__main__":
    sys.exit(main())
