"""``sgdyn reproduce``: the paper's protocol end to end (Figs 1, 2, S1, S2, Eq 16)."""

from .pipeline import ReproduceConfig, analyse_capture, config_from_args, run_reproduce

__all__ = ["ReproduceConfig", "analyse_capture", "config_from_args", "run_reproduce"]
