"""`sgdyn validate` end to end on a reduced suite: records, claims, report, a cell whose
dataset folder is missing (fails with its reason, the others finish), resume after an
interrupted cell; and the quick suite itself (slow)."""

import json

import pytest
from _tiny_suite import grid, suite_toml

from sgdyn.validation.cli import main
from sgdyn.validation.studies.suite.claims import CLAIMS
from sgdyn.validation.studies.suite.study import ValidateConfig, run_validate, spectrum_top_k

TINY = suite_toml(
    "tiny",
    "two digits cells and a CIFAR-10 cell without its folder",
    grid("sgd", 50, 0.2),
    grid("adam", 50, 0.003),
    grid("sgd", 100, 0.05, dataset="cifar10", model="lenet-cifar", tag="lenet"),
)
SGD = "digits-mlp2-sgd-B50-a0.2-s0"
ADAM = "digits-mlp2-adam-B50-a0.003-s0"
CIFAR = "cifar10-lenet-sgd-B100-a0.05-s0"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("validate")
    suite = d / "tiny.toml"
    suite.write_text(TINY)
    out = d / "run"
    cfg = ValidateConfig(suite=str(suite), data_root=str(d / "no-such-folder"), device="cpu")
    return suite, out, cfg, run_validate(cfg, out, jobs=1)


def test_records_claims_and_report(tiny_run):
    suite, out, cfg, s = tiny_run
    cells = {c["key"]: c for c in s["cells"]}
    assert set(cells) == {SGD, ADAM, CIFAR}
    assert cells[CIFAR]["status"] == "failed" and "not a folder" in cells[CIFAR]["error"]
    assert cells[CIFAR]["error"].count("\n") == 0
    rec = cells[SGD]["record"]
    for k in ("psi", "psi_err", "gamma", "psi_eq", "mlf", "sim", "phases", "timings"):
        assert k in rec
    assert cells[SGD]["wall_s"] > 0
    assert rec["sim"]["variants"]["network"]["psi"] is not None
    assert "skipped" in cells[ADAM]["record"]["sim"]  # Adam has no SGD step to simulate
    assert set(s["claims"]) == set(CLAIMS)
    row = next(r for r in s["psi_table"] if r["key"] == SGD)
    assert row["gamma_network_topk"] is not None and row["gamma_sim_topk"] is not None
    for c in s["claims"].values():
        assert CIFAR in c["not_measured"]  # a failed cell never passes a claim
    md = (out / "report.md").read_text()
    assert "## Claims" in md and SGD in md and "diverged" not in md.split("## Figures")[1]
    for name in CLAIMS:
        assert (out / f"claim_{name}.png").is_file()
    assert (out / "fig_psi_real_vs_sim.png").is_file() and (out / "report.html").is_file()
    assert json.loads((out / "summary.json").read_text())["n_failed"] == 1


def test_resume_after_an_interrupted_cell(tiny_run):
    suite, out, cfg, s = tiny_run
    done = out / "cells" / ADAM / "result.json"
    kept = out / "cells" / SGD / "result.json"
    t_kept = kept.stat().st_mtime_ns
    done.unlink()  # ADAM was killed mid-cell ...
    (out / "summary.json").unlink()  # ... so the suite never finished
    s2 = run_validate(cfg, out, jobs=1)
    st = {c["key"]: c["status"] for c in s2["cells"]}
    assert st == {SGD: "cached", ADAM: "done", CIFAR: "failed"}
    assert kept.stat().st_mtime_ns == t_kept and done.is_file()


def test_cli_bad_input_refused_before_the_folder(tiny_run, tmp_path, capsys):
    suite = tiny_run[0]
    out = tmp_path / "never"
    assert main(["validate", "--suite", str(suite), "--cells", "nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown cell keys ['nope']" in err and err.count("\n") == 1
    assert main(["validate", "--suite", "nope", "--out", str(out)]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    assert not out.exists()


def test_top_k_spectrum_exponent_against_a_power_law(tmp_path):
    import numpy as np

    r = np.arange(1, 21, dtype=float)
    f = tmp_path / "a.npz"
    rng = np.random.default_rng(0)
    np.savez(f, ensemble_M=np.ones((3, 20)), var_network=r**-2.5,
             sim_var_network=rng.permutation(r**-1.5))  # fmt: skip
    g = spectrum_top_k(f)
    assert g["gamma_network_topk"] == pytest.approx(2.5)
    assert g["gamma_sim_topk"] == pytest.approx(1.5)  # sorted: a spectrum, not mode order
    assert spectrum_top_k(tmp_path / "missing.npz")["gamma_sim_topk"] is None


@pytest.mark.slow
def test_quick_suite_end_to_end(tmp_path):
    """The README's command: the whole quick suite (about 2-3 minutes with --jobs 2)."""
    out = tmp_path / "q"
    assert main(["validate", "--suite", "quick", "--jobs", "2", "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    s = json.loads((out / "summary.json").read_text())
    assert s["n_failed"] == 0 and s["n_cells"] == 4
    assert s["timings"]["total_s"] < 600
    assert s["claims"]["psi_positive"]["status"] == "holds"
    assert all(c["wall_s"] > 0 for c in s["cells"])
