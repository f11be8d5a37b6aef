"""Evaluation helpers on top of mmengine runners: the multi-resolution protocol."""

from .multires import MultiResResult, evaluate_at_resolutions, plot_metric_vs_resolution, write_results

__all__ = ["MultiResResult", "evaluate_at_resolutions", "plot_metric_vs_resolution", "write_results"]
