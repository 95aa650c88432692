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
reproduces the learner's result. One section per chapter below.
"""

from .ch01 import check_attention, check_causal_mask, check_split_heads
from .ch02 import check_layer_norm, check_sinusoidal
from .ch03 import check_bpe_merge, check_pair_counts, merge_pair, pair_counts
from .ch04 import check_causal_lm_loss, check_greedy_decode, check_top_k
from .ch05 import check_mlm_masking, check_sentence_pair
from .ch06 import check_factorized_param_count, check_sop_pairs
from .ch07 import check_patch_mask, check_patchify
from .ch08 import check_rtd_labels, check_span_corruption
from .ch09 import check_bitfit, check_lora_linear
from .ch10 import check_distillation_loss, check_quantize_int8
from .framework import CheckResult, Mistake, exercise

__all__ = [
    "CheckResult",
    "Mistake",
    "check_attention",
    "check_bitfit",
    "check_bpe_merge",
    "check_causal_lm_loss",
    "check_causal_mask",
    "check_distillation_loss",
    "check_factorized_param_count",
    "check_greedy_decode",
    "check_layer_norm",
    "check_lora_linear",
    "check_mlm_masking",
    "check_pair_counts",
    "check_patch_mask",
    "check_patchify",
    "check_quantize_int8",
    "check_rtd_labels",
    "check_sentence_pair",
    "check_sinusoidal",
    "check_sop_pairs",
    "check_span_corruption",
    "check_split_heads",
    "check_top_k",
    "exercise",
    "merge_pair",
    "pair_counts",
]
