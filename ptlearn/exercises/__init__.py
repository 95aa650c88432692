"""Checkers for the course's coding exercises: your function against ptlearn's reference.

Each ``check_*`` function calls the function you wrote on random inputs of several shapes, compares
the result with ptlearn's own implementation, and prints a verdict: that it passed, or what is wrong
in plain words ("the scores are not divided by sqrt(d_k)", "future leak: position 2 may attend to
position 3"). It returns a :class:`CheckResult` (``result.passed``, ``result.message``) and never
raises, so a notebook runs top to bottom while an exercise is still ``raise NotImplementedError``.

Adding a checker for a chapter: put the messages for the mistakes it recognises in a dict, write a
function that raises :class:`Mistake` with one of them (or a specific message) and returns a
success message, and decorate it with ``@exercise(name)``. Call the learner's code through
:func:`call`; compare tensors with :func:`close`; :func:`diagnose` finds which known mistake
reproduces the learner's result. One module per chapter (``ch01`` ... ``ch12``); the shared
machinery lives in :mod:`ptlearn.exercises.framework`.

How to write an exercise (the conventions every chapter follows; ``tests/test_notebook_rules.py``
enforces the ones about notebooks):

1. A markdown cell states the task: the function or module to write, its inputs and outputs with
   shapes, and what the checker compares. A build-it checker copies ptlearn's weights into the
   learner's module and compares shapes, outputs, gradients and masks.
2. A code cell holds the stub: the learner's names (``my_attention``, ``MyBlock``) with
   ``raise NotImplementedError`` bodies and clear TODOs. The next code cell calls the checker:
   ``result = check_attention(my_attention)``.
3. Then 1-3 hints, each collapsed in its own ``<details><summary>Hint 1</summary>`` block, and the
   solution collapsed in a ``<details><summary>Solution</summary>`` block with the code in a
   fenced python block (:func:`hint_markdown`, :func:`solution_markdown` write them). ``<details>``
   is collapsed on Colab, VS Code, GitHub/nbviewer and JupyterLab alike. Solutions are never
   executable cells and never define the learner's names: they use ``attention_solution``,
   ``SolutionBlock``. A discussion answer is a ``<details><summary>Answer</summary>`` block.
4. Where the chapter goes on to use the learner's code, it continues with it only if the check
   passed, else with ptlearn's reference, saying so in a printed line:
   ``MyGPT = use_learner(result, MyGPT, reference=GPT)`` (:func:`use_learner`).
5. Each checker gets tests: the correct solution, written independently in the test (not the
   reference compared with itself), passes; at least three typical mistakes are each named.
   ``ptlearn grade`` finds exercises by their ``check_*`` calls, so call checkers by the names
   exported here.
"""

from .ch01 import (
    check_attention,
    check_causal_mask,
    check_multi_head_attention,
    check_split_heads,
)
from .ch02 import (
    check_decoder_mask,
    check_layer_norm,
    check_sinusoidal,
    check_transformer_block,
)
from .ch03 import check_bpe_merge, check_pair_counts, merge_pair, pair_counts
from .ch04 import (
    check_causal_lm_loss,
    check_greedy_decode,
    check_kv_cache,
    check_my_gpt,
    check_top_k,
    check_training_loop,
)
from .ch05 import check_bert_embeddings, check_mlm_head, check_mlm_masking, check_sentence_pair
from .ch06 import (
    check_factorized_embeddings,
    check_factorized_param_count,
    check_shared_encoder,
    check_sop_pairs,
)
from .ch07 import (
    check_mae_unshuffle,
    check_patch_embedding,
    check_patch_mask,
    check_patchify,
    check_vit_classifier,
)
from .ch08 import check_last_token_pool, check_rtd_labels, check_span_corruption
from .ch09 import check_bitfit, check_lora_attention, check_lora_linear
from .ch10 import check_distillation_loss, check_quantize_int8
from .ch11 import check_mean_pool, check_previous_token_head
from .ch12 import check_rms_norm, check_rotary
from .framework import (
    CheckResult,
    Mistake,
    exercise,
    hint_markdown,
    solution_markdown,
    use_learner,
)

__all__ = [
    "CheckResult",
    "Mistake",
    "check_attention",
    "check_bert_embeddings",
    "check_bitfit",
    "check_bpe_merge",
    "check_causal_lm_loss",
    "check_causal_mask",
    "check_decoder_mask",
    "check_distillation_loss",
    "check_factorized_embeddings",
    "check_factorized_param_count",
    "check_greedy_decode",
    "check_kv_cache",
    "check_last_token_pool",
    "check_layer_norm",
    "check_lora_attention",
    "check_lora_linear",
    "check_mae_unshuffle",
    "check_mlm_head",
    "check_mean_pool",
    "check_mlm_masking",
    "check_multi_head_attention",
    "check_my_gpt",
    "check_pair_counts",
    "check_patch_embedding",
    "check_patch_mask",
    "check_previous_token_head",
    "check_patchify",
    "check_quantize_int8",
    "check_rms_norm",
    "check_rotary",
    "check_rtd_labels",
    "check_sentence_pair",
    "check_shared_encoder",
    "check_sinusoidal",
    "check_sop_pairs",
    "check_span_corruption",
    "check_split_heads",
    "check_top_k",
    "check_training_loop",
    "check_transformer_block",
    "check_vit_classifier",
    "exercise",
    "hint_markdown",
    "solution_markdown",
    "use_learner",
    "merge_pair",
    "pair_counts",
]
