"""``sgdyn reproduce --quick`` end to end on the 8x8 digits, and its bad-input paths."""

import json

import pytest

from sgdyn.validation.cli import main

REQUIRED = [
    ("pca", "gamma"),
    ("pca", "n90_excl_pc1"),
    ("pca", "var1_over_var2"),
    ("phases", "transition_epoch"),
]


def _run(out, *extra):
    return main(
        ["reproduce", "--quick", "--no-progress", "--no-landscape", "--out", str(out), *extra]
    )


def test_quick_run_writes_everything_and_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(a) == 0
    s = json.loads((a / "summary.json").read_text())
    for sec, key in REQUIRED:
        assert s[sec][key] is not None
    assert s["config"]["seed"] == 0 and s["config"]["dataset"] == "digits"
    assert s["pca"]["n_features"] == 2500 and s["pca"]["gamma"] > 0
    assert s["pca"]["var1_over_var2"] > 1
    for f in ["arrays.npz", "report.md", "fig1a_spectrum.png", "figS1_phases.png"]:
        assert (a / f).stat().st_size > 0
    assert "gamma" in (a / "report.md").read_text()
    assert _run(b) == 0
    s2 = json.loads((b / "summary.json").read_text())
    assert s2["pca"] == s["pca"] and s2["phases"] == s["phases"]


def test_rerun_is_a_noop_and_other_config_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(out) == 0
    before = (out / "summary.json").stat().st_mtime_ns
    assert _run(out) == 0
    assert (out / "summary.json").stat().st_mtime_ns == before
    assert _run(out, "--seed", "3") == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "summary.json").stat().st_mtime_ns == before  # finished result kept


def test_resume_from_capture_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert _run(out) == 0
    first = json.loads((out / "summary.json").read_text())
    (out / "summary.json").unlink()  # as if the analysis had been interrupted
    assert _run(out) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["timings"].get("resumed") is True
    assert again["pca"]["gamma"] == pytest.approx(first["pca"]["gamma"], rel=1e-9)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "200"], "diverged"),
        (["--batch-size", "100000"], "batch size"),
        (["--lr", "-1"], "learning rate"),
        (["--probe", "nope.weight"], "no parameter"),
        (["--dataset", "mnist", "--data-root", "/nonexistent/folder"], "not a folder"),
        (["--window-epochs", "0"], "window_epochs"),
    ],
)
def test_bad_input_gives_clear_error(tmp_path, capsys, args, message):
    assert _run(tmp_path / "bad", *args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "reproduce" in capsys.readouterr().out
