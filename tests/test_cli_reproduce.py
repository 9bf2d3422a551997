"""``sgdyn reproduce --quick`` end to end on the 8x8 digits, and its bad-input paths."""

import json
import shutil

import pytest
import torch

from sgdyn.validation.cli import main
from sgdyn.validation.studies.reproduce import pipeline

REQUIRED = [
    ("pca", "gamma"),
    ("pca", "n90_excl_pc1"),
    ("pca", "var1_over_var2"),
    ("phases", "transition_epoch"),
]


def _run(out, *extra):
    return main(
        [
            "reproduce",
            "--quick",
            "--no-progress",
            "--no-landscape",
            "--no-mechanism",  # tests/test_mechanism_stage.py runs it
            "--device",
            "cpu",
            "--out",
            str(out),
            *extra,
        ]  # fmt: skip
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished ``reproduce --quick --no-landscape`` run; tests work on copies of it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert _run(out) == 0
    return out


def _finished_copy(src, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


def test_quick_run_writes_everything_and_saved_config_reruns_identically(tmp_path):
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
    html = (a / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(
        [f for f in s["files"] if f.endswith(".png")]
    )
    assert sorted(s["files"]) == sorted(p.name for p in a.iterdir() if p.name != ".sgdyn-files")
    # --config reruns the saved config (training included: a new folder) to the same numbers
    assert main(["reproduce", "--config", str(a / "summary.json"), "--out", str(b)]) == 0
    s2 = json.loads((b / "summary.json").read_text())
    assert s2["config"] == s["config"]
    assert s2["pca"] == s["pca"] and s2["phases"] == s["phases"] and s2["dynamics"] == s["dynamics"]
    assert s2["timings"].get("resumed") is None


def test_rerun_is_a_noop_and_other_config_refused(finished, tmp_path, capsys):
    out = _finished_copy(finished, tmp_path)
    before = (out / "summary.json").stat().st_mtime_ns
    assert _run(out) == 0
    assert (out / "summary.json").stat().st_mtime_ns == before
    assert _run(out, "--seed", "3") == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "summary.json").stat().st_mtime_ns == before  # finished result kept


def test_resume_from_capture_checkpoint(finished, tmp_path):
    out = _finished_copy(finished, tmp_path)
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
        (["--lr", "1"], "the network is not learning"),  # dead ReLUs: loss back at ln 10
    ],
)
def test_bad_input_gives_clear_error(tmp_path, capsys, args, message):
    assert _run(tmp_path / "bad", *args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and err.count("\n") == 1
    if message not in ("the network is not learning", "diverged"):
        assert not (tmp_path / "bad").exists()  # refused before the folder is created
    else:  # found while training: refused, and no finished-looking result left behind
        assert not (tmp_path / "bad" / "summary.json").exists()


def test_capture_checkpoint_is_never_unpickled(finished, tmp_path):
    out = _finished_copy(finished, tmp_path)
    first = json.loads((out / "summary.json").read_text())
    marker = tmp_path / "code-ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": 2, "payload": Evil()}, out / "capture.pt")
    (out / "summary.json").unlink()  # an unfinished folder someone handed over
    assert _run(out) == 0
    assert not marker.exists()  # weights_only=True: the pickle's code never ran
    again = json.loads((out / "summary.json").read_text())
    assert again["timings"].get("resumed") is None  # recaptured, same numbers
    assert again["pca"] == first["pca"]
    st = torch.load(out / "capture.pt", weights_only=True)  # the new one is plain data
    assert st["capture_config"]["seed"] == 0 and len(st["data_fingerprint"]) == 64


def test_changed_data_is_not_mixed_with_an_old_capture(finished, tmp_path, monkeypatch):
    out = _finished_copy(finished, tmp_path)
    (out / "summary.json").unlink()
    from sgdyn.validation.studies import capture as capture_mod

    real = capture_mod.load_dataset  # what CaptureConfig.load_data reads through

    def shifted(*a, **k):
        d = real(*a, **k)
        d.x = d.x.flip(0)  # same path and size, other samples: a changed data folder
        d.y = d.y.flip(0)
        return d

    monkeypatch.setattr(capture_mod, "load_dataset", shifted)
    assert _run(out) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["timings"].get("resumed") is None  # retrained on the new data
    assert (
        s["data"]["fingerprint_sha256"]
        == torch.load(out / "capture.pt", weights_only=True)["data_fingerprint"]
    )


def test_analysis_only_options_do_not_retrain(finished, tmp_path):
    out = _finished_copy(finished, tmp_path)
    first = json.loads((out / "summary.json").read_text())
    assert _run(out, "--rank-range", "5,40", "--force") == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["timings"].get("resumed") is True and s["config"]["rank_range"] == [5, 40]
    assert s["phases"] == first["phases"] and s["pca"]["gamma"] != first["pca"]["gamma"]


def test_interrupted_force_rerun_leaves_no_finished_looking_mix(
    finished, tmp_path, monkeypatch, capsys
):
    out = _finished_copy(finished, tmp_path)
    old_figs = sorted(p.name for p in out.glob("*.png"))

    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(pipeline, "analyse_capture", boom)
    assert _run(out, "--window-epochs", "3", "--force") == 2
    assert "interrupted" in capsys.readouterr().err
    assert not (out / "summary.json").exists()  # unfinished, not the old run's summary
    assert not any((out / f).exists() for f in old_figs)  # no figures of another run
    monkeypatch.undo()
    assert _run(out, "--window-epochs", "3") == 0  # finishes cleanly afterwards
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["window_epochs"] == 3


def test_every_command_refuses_another_commands_finished_run(finished, tmp_path, capsys):
    out = _finished_copy(finished, tmp_path)
    before = (out / "summary.json").read_bytes()
    assert main(["flatness-grid", "--quick", "--out", str(out)]) == 2
    assert main(["simulate", "--quick", "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("--force") == 2
    assert (out / "summary.json").read_bytes() == before


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "reproduce" in capsys.readouterr().out
