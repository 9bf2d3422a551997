"""The shared CLI machinery (validation/cli/common.py, main.py) on every command."""

import argparse
import json

import pytest
import torch

from sgdyn.simulator.presets import PRESETS
from sgdyn.validation.cli import build_parser, common, main
from sgdyn.validation.cli.main import _command_modules
from sgdyn.validation.studies.flatness_grid import GridConfig
from sgdyn.validation.studies.reproduce.pipeline import ReproduceConfig
from sgdyn.validation.studies.simulate import SimStudyConfig
from sgdyn.validation.studies.suite.study import ValidateConfig

COMMANDS = {"reproduce": ReproduceConfig, "simulate": SimStudyConfig, "flatness-grid": GridConfig}
COMMANDS["validate"] = ValidateConfig
SHARED = ["--out", "--force", "--seed", "--device", "--threads", "--no-progress", "--verbose"]
SHARED += ["--config", "--print-config"]


def _subparsers():
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _print_config(capsys, *argv):
    assert main(list(argv)) == 0
    out = json.loads(capsys.readouterr().out)
    return out["config"]


def test_every_command_is_covered_here():
    assert {m.NAME for m in _command_modules()} >= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_each_default_once_and_never_none(name):
    text = _subparsers()[name].format_help()
    assert "default: None" not in text and "(default None)" not in text
    for opt in SHARED:
        assert opt in text
    # an option's help mentions its default at most once
    for block in text.split("\n  -")[1:]:
        assert block.count("default") <= 1, block


def test_simulate_lists_every_preset():
    choices = next(a.choices for a in _subparsers()["simulate"]._actions if a.dest == "preset")
    assert tuple(choices) == tuple(PRESETS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_defaults_are_the_study_defaults(name, capsys, tmp_path):
    cfg = _print_config(capsys, name, "--print-config")
    expected = COMMANDS[name]().as_dict()
    if name == "simulate":  # the CLI's --max-memory etc. are run options, not settings
        pass
    assert cfg == expected
    assert cfg["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_shared_options_after_the_subcommand_on_every_command(name, capsys, tmp_path):
    out = tmp_path / "never-created"
    cfg = _print_config(
        capsys, name, "-v", "--seed", "7", "--device", "cpu", "--threads", "1",
        "--no-progress", "--out", str(out), "--print-config",
    )  # fmt: skip
    assert cfg["seed"] == 7 and cfg["device"] == "cpu"
    assert not out.exists()  # --print-config creates nothing
    cfg = _print_config(capsys, "-v", name, "--seed", "8", "--print-config")  # before, too
    assert cfg["seed"] == 8


def test_quick_never_replaces_options_given(capsys):
    c = _print_config(capsys, "reproduce", "--quick", "--window-epochs", "3", "--print-config")
    assert c["window_epochs"] == 3 and c["dataset"] == "digits" and c["quick"] is True
    assert c["landscape_modes"] == 30  # quick default ...
    c = _print_config(capsys, "reproduce", "--quick", "--landscape-modes", "12", "--print-config")
    assert c["landscape_modes"] == 12  # ... unless given
    c = _print_config(capsys, "flatness-grid", "--quick", "--lrs", "0.05", "--print-config")
    assert c["lrs"] == [0.05] and c["batch_sizes"] == [50, 100] and c["dataset"] == "digits"
    c = _print_config(capsys, "simulate", "--quick", "--N", "20", "--print-config")
    assert c["N"] == 20 and c["replicas"] == 48


def test_one_list_syntax_and_one_name_for_the_flatness_modes(capsys):
    c = _print_config(
        capsys, "reproduce", "--hidden", "30,20", "--rank-range", "5,40", "--print-config"
    )
    assert c["hidden"] == [30, 20] and c["rank_range"] == [5, 40]
    c = _print_config(capsys, "flatness-grid", "--batch-sizes", "10,20", "--print-config")
    assert c["batch_sizes"] == [10, 20]
    for name in ("reproduce", "flatness-grid"):
        c = _print_config(capsys, name, "--landscape-modes", "9", "--print-config")
        assert c["landscape_modes"] == 9
    with pytest.raises(SystemExit):
        main(["flatness-grid", "--n-modes", "9", "--print-config"])
    with pytest.raises(SystemExit):
        main(["reproduce", "--hidden", "30,x", "--print-config"])
    assert "comma-separated integers" in capsys.readouterr().err


def test_config_file_reruns_and_given_options_override(tmp_path, capsys):
    saved = {"command": "simulate", "config": {**SimStudyConfig(N=7).as_dict()}}
    f = tmp_path / "summary.json"
    f.write_text(json.dumps(saved))
    c = _print_config(capsys, "simulate", "--config", str(f), "--print-config")
    assert c == SimStudyConfig(N=7).as_dict()
    c = _print_config(capsys, "simulate", "--config", str(f), "--seed", "5", "--print-config")
    assert c["N"] == 7 and c["seed"] == 5
    assert main(["reproduce", "--config", str(f), "--print-config"]) == 2
    assert "config of `sgdyn simulate`" in capsys.readouterr().err
    assert main(["simulate", "--config", str(f), "--quick", "--print-config"]) == 2
    assert main(["simulate", "--config", str(tmp_path / "nope.json"), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["reproduce", "--lr", "-1"], "learning rate"),
        (["reproduce", "--rank-range", "50,10"], "rank-range"),
        (["simulate", "--N", "2"], "--N >= 3"),
        (["simulate", "--preset", "from-profiles"], "--profiles"),
        (["flatness-grid", "--lrs", "-1"], "learning rates must be positive"),
        (["reproduce"], "--out DIR is required"),
    ],
)
def test_bad_options_refused_before_the_folder_exists(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    extra = ["--out", str(out)] if argv != ["reproduce"] else []
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_device_auto_and_a_missing_cuda_are_explained(capsys):
    from sgdyn.validation.io.config import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        assert main(["simulate", "--device", "cuda", "--print-config"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    assert main(["simulate", "--device", "tpu9", "--print-config"]) == 2
    assert "not a torch device" in capsys.readouterr().err


def test_progress_bars_only_on_a_terminal(monkeypatch):
    ns = argparse.Namespace(no_progress=False)
    monkeypatch.setattr(common.sys.stderr, "isatty", lambda: False, raising=False)
    assert common.progress_enabled(ns) is False
    monkeypatch.setattr(common.sys.stderr, "isatty", lambda: True, raising=False)
    assert common.progress_enabled(ns) is True
    assert common.progress_enabled(argparse.Namespace(no_progress=True)) is False


def test_threads_default_to_one_and_are_applied(capsys, tmp_path):
    p = _subparsers()["reproduce"]
    assert p.parse_args([]).threads == 1
    before = torch.get_num_threads()
    try:
        common.set_threads(2)
        assert torch.get_num_threads() == 2
        common.set_threads(0)  # 0: leave torch's choice
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="--threads"):
            common.set_threads(-1)
    finally:
        torch.set_num_threads(before)
