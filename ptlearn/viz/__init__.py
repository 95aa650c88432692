"""See inside the models: attention plots, notebook widgets, offline HTML export, bertviz bridge.

Every view reads what the models return: ``attentions``, the per-layer tuple of ``[B, H, Tq, Tk]``
tensors from ``model(..., output_attentions=True)`` (ptlearn and HF models alike; batch row 0 unless
``batch=`` says otherwise), plus the tokens that label the axes.

- static figures (matplotlib, return a Figure): :func:`plot_attention`, :func:`plot_attention_grid`,
  :func:`plot_attention_arcs`, :func:`plot_rollout`, :func:`plot_history`,
  :func:`plot_positional_encoding`, :func:`plot_position_similarity`; save with :func:`save_figure`;
- widgets (ipywidgets 7 or 8, return a box with ``.controls`` and ``.current``):
  :func:`attention_explorer`, :func:`fill_mask_playground`, :func:`generation_playground`,
  :func:`vit_explorer`, :func:`patch_masking_view`, :func:`parameter_budget`,
  :func:`attention_replay`, :func:`head_step_by_step`, :func:`softmax_temperature_demo`,
  :func:`rollout_explorer`, :func:`error_explorer` (a classifier's mistakes with its [CLS]
  attention, beside :func:`plot_confusion_matrix`), and the Trainer callback :class:`LiveMonitor`;
- offline export: :func:`export_html` (one self-contained interactive page), and
  :func:`embed_attention` (that page inside a notebook output: interactive without a kernel);
- bertviz: :func:`head_view`, :func:`model_view` (bertviz itself is imported only when called).
"""

from .bertviz_bridge import head_view, model_view
from .budget import parameter_breakdown, parameter_budget
from .embed import embed_attention
from .error_analysis import classify_with_attention, error_explorer, plot_confusion_matrix
from .export import attention_view, attention_view_data, export_html
from .figures import save_figure
from .lessons import attention_steps, head_step_by_step, softmax_temperature_demo
from .monitor import LiveMonitor
from .playgrounds import fill_mask_playground, generation_playground
from .plots import (
    plot_attention,
    plot_attention_arcs,
    plot_attention_grid,
    plot_history,
    plot_position_similarity,
    plot_positional_encoding,
)
from .rollout import attention_rollout, plot_rollout
from .sampling import fill_mask_predictions, sample_steps
from .vision import mae_keep_mask, patch_masking_view, rollout_explorer, vit_explorer
from .widgets import attention_explorer, attention_replay

__all__ = [
    "LiveMonitor",
    "attention_explorer",
    "attention_replay",
    "attention_rollout",
    "attention_steps",
    "attention_view",
    "attention_view_data",
    "classify_with_attention",
    "embed_attention",
    "error_explorer",
    "export_html",
    "fill_mask_playground",
    "fill_mask_predictions",
    "generation_playground",
    "head_step_by_step",
    "head_view",
    "mae_keep_mask",
    "model_view",
    "parameter_breakdown",
    "parameter_budget",
    "patch_masking_view",
    "plot_attention",
    "plot_attention_arcs",
    "plot_attention_grid",
    "plot_confusion_matrix",
    "plot_history",
    "plot_position_similarity",
    "plot_positional_encoding",
    "plot_rollout",
    "rollout_explorer",
    "sample_steps",
    "save_figure",
    "softmax_temperature_demo",
    "vit_explorer",
]
