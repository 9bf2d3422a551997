"""docs/your-model.md runs end to end: its python blocks, in order, as one script, with the
sizes shrunk (a small CIFAR-10 subset; FakeData where the shared copy is absent)."""

import re
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "your-model.md"
SMALL = {
    "N_TRAIN": "400",
    "WARMUP_EPOCHS": "3",
    "WINDOW_EPOCHS": "2",
    "N_LANDSCAPE": "200",
    "K_MODES": "12",
    "N_EIG": "3",
}


def guide_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) >= 6
    code = "\n".join(blocks)
    for name, value in SMALL.items():
        code, n = re.subn(rf"^{name} = [^#\n]+", f"{name} = {value}  ", code, flags=re.M)
        assert n == 1, f"the guide no longer sets {name} once"
    return code


def test_guide_runs_end_to_end(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the guide's data path is relative to the repository root
    torch.set_num_threads(1)
    ns: dict = {"__name__": "guide"}
    exec(compile(guide_code(), str(GUIDE), "exec"), ns)
    out = capsys.readouterr().out
    for word in ("gamma =", "evaluator: cached-tail", "psi =", "F_e-width / F_hessian", "cos(",
                 "psi_D ="):  # fmt: skip
        assert word in out
    assert ns["land"].evaluator == "cached-tail"
    assert ns["x"].shape[1:] == (3, 32, 32)
    assert ns["rec"].n_recorded == 2 * (400 // 50)
    assert np.isfinite(ns["spec"].gamma) and np.isfinite(ns["fit"].psi)
    assert ns["cur"].eigenvalues.shape == (3,)
    assert np.isfinite(ns["report"]["alignment"]["null_eig_cosine_median"])
    assert ns["noise"].D.shape == (12,) and np.all(ns["noise"].D > 0)
    assert ns["model"].training  # the landscape handed the model back in train mode
