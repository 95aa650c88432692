"""Shared fixtures (the real data directory, seeding) and the test lanes.

Lanes: every test carries the markers of what it needs, applied here from what is known about the
files and tests, so no test file has to remember them:

- ``notebook``: runs a course notebook (nbval items, ``test_notebooks.py``'s executions,
  ``test_execute.py``'s kernels);
- ``browser``: drives Chromium (``test_browser*.py``, ``test_site*.py``);
- ``slow``: trains for many steps, starts subprocesses (torchrun, the CLI, a killed run), loads
  HF ``transformers`` or real weights, or scans whole corpora; each took over ~3 s on 2 idle cores.

Day to day: ``pytest -m "not slow and not notebook and not browser"`` (about a minute on 2 cores).
CI runs everything (the README's command).
"""

import os
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# whole files: every test in them is slow (HF parity and real weights import transformers; DDP
# starts torchrun; the CLI, package and SST-2 split tests run subprocesses or scan the corpus)
SLOW_FILES = {
    "test_ddp.py",
    "test_hf_bert_albert.py",
    "test_hf_gpt_vit.py",
    "test_minilm.py",
    "test_cli.py",
    "test_package.py",
    "test_sst2_split.py",
    "test_viz_bertviz.py",
}
# single tests (node id without parameters) measured over ~3 s
SLOW_TESTS = {
    "test_attention.py::test_causal_attention_never_looks_ahead_for_random_shapes",
    "test_bert.py::test_padding_never_changes_outputs_at_real_positions",
    "test_bert.py::test_mlm_learns_to_fill_in_a_periodic_pattern",
    "test_data.py::test_digits",
    "test_gpt.py::test_gpt_learns_to_count",
    "test_gpt.py::test_greedy_tokens_with_and_without_cache_are_identical",
    "test_gpt.py::test_changing_later_tokens_never_changes_earlier_logits",
    "test_misuse_cli.py::test_finetune_from_another_source_does_not_resume_the_first",
    "test_vit.py::test_mae_reconstruction_loss_falls_on_digits",
    "test_exercises_build.py::test_training_loop_checker_names_loop_mistakes",
    "test_exercises_build.py::test_block_checker_passes_an_independent_block_pre_and_post_norm",
    "test_training.py::test_killed_run_resumes_to_the_same_weights",
    "test_training.py::test_weight_decay_applies_only_to_matrices",
    "test_transformer.py::test_encoder_decoder_learns_reversal_with_antidiagonal_cross_attention",
    "test_data.py::test_heavy_libraries_are_imported_lazily",
    "test_data.py::test_sst2_splits",
    "test_recipes.py::test_vit_recipe_evaluates_on_the_digits_test_split",
    "test_recipes.py::test_finetune_starts_from_the_pretrained_encoder_and_tokenizer",
    "test_recipes.py::test_finetune_on_real_text_pads_batches_with_the_tokenizer",
    "test_recipes.py::test_finetune_refuses_a_checkpoint_of_the_other_model",
    "test_recipes.py::test_gpt_recipe_learns_the_grammar_characters",
    "test_recipes.py::test_bert_recipe_trains_and_reports_mlm_and_nsp_accuracy",
    "test_finetune.py::test_prefix_tuning_learns",
    "test_finetune.py::test_adapters_start_as_the_identity_then_learn",
    "test_finetune.py::test_lora_learns_a_separable_task_and_leaves_the_base_weights_alone",
    "test_distill.py::test_distillation_without_labels_teaches_the_student_the_teachers_answers",
}


def is_slow(item) -> bool:
    return item.get_closest_marker("slow") is not None


def lanes(item) -> list[str]:
    """The lane markers ``item`` needs (see the module docstring)."""
    path = Path(str(item.fspath))
    name = path.name
    test_id = f"{name}::{getattr(item, 'originalname', item.name)}"
    marks = []
    executes = name == "test_execute.py" or (name == "test_notebooks.py" and is_slow(item))
    if path.suffix == ".ipynb" or executes:  # test_notebooks.py's static checks stay fast
        marks += ["notebook", "slow"]
    if name.startswith(("test_browser", "test_site")):
        marks += ["browser", "slow"]
    if name in SLOW_FILES or test_id in SLOW_TESTS:
        marks.append("slow")
    return marks


def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in dict.fromkeys(lanes(item)):
            if not item.get_closest_marker(mark):
                item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The directory with tinyshakespeare/, sst2/ and ag_news/ (PTLEARN_DATA_DIR, else ../shared/data)."""
    env = os.environ.get("PTLEARN_DATA_DIR")
    for candidate in [Path(env)] if env else [SHARED_DATA]:
        if (candidate / "tinyshakespeare" / "input.txt").is_file():
            os.environ["PTLEARN_DATA_DIR"] = str(candidate)
            return candidate
    pytest.skip(
        "No real data directory is reachable: set PTLEARN_DATA_DIR to a folder with the "
        "DESIGN.md layout (tinyshakespeare/, sst2/, ag_news/) to run this test."
    )


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
