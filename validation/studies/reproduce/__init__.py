"""``sgdyn reproduce``: the paper's protocol end to end (Figs 1, 2, S1, S2, Eq 16)."""

from .pipeline import QUICK, ReproduceConfig, analyse_capture, run_reproduce

__all__ = ["QUICK", "ReproduceConfig", "analyse_capture", "run_reproduce"]
