"""Shared fixtures (the real data directory, seeding) and the test lanes.

Lanes: every test carries the markers of what it needs, applied here from what is known about the
files and tests, so no test file has to remember them:

- ``notebook``: runs a course notebook (nbval items, ``test_notebooks.py``'s executions,
  ``test_execute.py``'s kernels);
- ``browser``: drives Chromium (``test_browser*.py``, ``test_site*.py``);
- ``slow``: trains for many steps, starts subprocesses (torchrun, the CLI, a killed run, a
  kernel), loads HF ``transformers`` or real weights, or scans whole corpora: each test that
  ``--durations`` measured over ~3 s in the fast lane on the shared 2-core machine, or that took
  over ~1 CPU-second there.

Day to day: ``pytest -m "not slow and not notebook and not browser"``. Measured 2026-12-03 on 2
idle cores: 770 tests in 34 s of wall time (26 s in the tests; before this split the lane took
164 s).
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
    # measured over ~3 s with --durations in the fast lane on the shared 2-core machine (load ~10)
    "test_pretraining.py::test_each_objective_trains_and_gives_a_backbone",
    "test_pretraining.py::test_electra_loss_is_mlm_plus_weighted_rtd_and_embeddings_are_shared",
    "test_vit.py::test_vit_learns_digits",
    "test_recipes.py::test_pretraining_batches_are_masked_sentence_pairs",
    "test_grade.py::test_grade_gives_each_learner_a_verdict",
    "test_grade.py::test_grade_with_solutions_checks_the_notebooks_own_solution",
    "test_exercises_build.py::test_mha_checker_names_the_mistake",
    "test_exercises_build.py::test_block_checker_names_the_mistake",
    "test_viz_widgets.py::test_live_monitor_and_attention_replay_in_a_trainer_run",
    "test_viz_widgets.py::test_head_step_by_step_on_given_qkv",
    "test_viz_widgets.py::test_head_step_by_step_from_the_learners_sentence",
    "test_viz_widgets.py::test_playgrounds_and_vit_explorer_on_real_ptlearn_models",
    "test_viz_widgets.py::test_fill_mask_playground_menu_selects_the_mask_it_shows",
    "test_viz_widgets.py::test_fill_mask_playground_predictions_and_attention_row",
    # over ~1 CPU-second each (measured per test on the same machine, a second pass)
    "test_grade.py::test_grade_writes_csv_and_summary",
    "test_gpt.py::test_sampling_is_reproducible_and_top_k_1_is_greedy",
    "test_gpt.py::test_cached_forward_equals_full_forward",
    "test_transformer.py::test_cached_greedy_decoding_equals_full_recomputation",
    "test_misuse_api.py::test_a_reader_of_a_live_folder_always_gets_one_consistent_checkpoint",
    "test_exercises_build.py::test_exercise_gpt_fallback_passes_the_gpt_and_cache_checkers",
    "test_exercises_build.py::test_kv_cache_checker_passes_an_independent_cache",
    "test_exercises_build.py::test_kv_cache_checker_names_the_mistake",
    "test_exercises_build.py::test_training_loop_checker_counts_clipping_after_the_step_as_no_clipping",
    "test_exercises_build.py::test_training_loop_checker_passes_an_independent_loop",
    "test_exercises_ch04_05.py::test_greedy_passes_loop_and_generate",
    "test_exercises_ch04_05.py::test_greedy_names_mistakes",
    "test_doctor.py::test_cli_doctor_runs",
    "test_doctor.py::test_import_ptlearn_does_not_import_transformers",
    "test_device.py::test_threads_capped_inside_a_real_one_cpu_cgroup",
    "test_device.py::test_gpu_check_script_says_so_without_a_gpu",
    "test_data.py::test_bag_of_words_cannot_solve_the_grammar",
    "test_albert.py::test_padding_never_changes_outputs_at_real_positions",
    "test_albert.py::test_albert_base_has_albert_base_parameter_count",
    "test_binder.py::test_no_python_311_only_import_without_a_fallback",
    "test_distill.py::test_distillation_model_sends_gradients_to_the_student_only",
    # test_misuse_cli.py's subprocess runs (its in-process cases, Ctrl-C included, stay fast)
    "test_misuse_cli.py::test_ctrl_c_stops_cleanly_with_a_checkpoint_and_says_how_to_continue",
    "test_misuse_cli.py::test_ctrl_c_with_default_options_leaves_a_checkpoint",
    "test_misuse_cli.py::test_a_killed_default_run_resumes_instead_of_restarting",
    "test_misuse_cli.py::test_a_crash_between_the_two_renames_is_recovered_before_resuming",
    "test_misuse_cli.py::test_another_corpus_in_the_same_out_is_refused",
    "test_misuse_cli.py::test_a_users_tokenizer_json_is_never_overwritten",
    "test_misuse_cli.py::test_two_runs_on_one_out_second_is_refused",
    "test_misuse_cli.py::test_out_pointing_at_a_file_is_one_line",
    "test_misuse_cli.py::test_out_in_a_read_only_folder_is_one_line",
    "test_misuse_cli.py::test_course_into_a_read_only_folder_is_one_line",
    "test_misuse_cli.py::test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_partial_folder",
    "test_misuse_cli.py::test_a_damaged_from_folder_is_one_line",
    "test_misuse_cli.py::test_resuming_keeps_the_runs_own_vocabulary",
}


def is_slow(item) -> bool:
    return item.get_closest_marker("slow") is not None


def file_lanes(path: Path) -> list[str]:
    """The lane markers every test in the file at ``path`` needs."""
    name = path.name
    marks = []
    if path.suffix == ".ipynb" or name == "test_execute.py":
        marks += ["notebook", "slow"]
    if name.startswith(("test_browser", "test_site")):
        marks += ["browser", "slow"]
    if name in SLOW_FILES:
        marks.append("slow")
    return marks


def lanes(item) -> list[str]:
    """The lane markers ``item`` needs (see the module docstring)."""
    path = Path(str(item.fspath))
    test_id = f"{path.name}::{getattr(item, 'originalname', item.name)}"
    marks = file_lanes(path)
    if path.name == "test_notebooks.py" and is_slow(item):  # its static checks stay fast
        marks += ["notebook", "slow"]
    if test_id in SLOW_TESTS:
        marks.append("slow")
    return marks


def pytest_ignore_collect(collection_path: Path, config):
    """Do not even import a file whose every test ``-m`` deselects by the file's lanes (the
    browser-lane files import nbformat: about 2 CPU-seconds of the fast lane's collection). Any
    marker that is not one of the file's lanes is tried both present and absent; the file is
    skipped only if ``-m`` refuses it both ways."""
    expr, marks = config.getoption("markexpr"), file_lanes(collection_path)
    if not expr or not marks:
        return None
    from _pytest.mark.expression import Expression  # pytest's own parser of -m

    def has(others: bool):
        return lambda name, **_: name in marks or others

    compiled = Expression.compile(expr)
    return None if compiled.evaluate(has(False)) or compiled.evaluate(has(True)) else True


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
