"""Run directories (validation/io/rundir.py) and the self-contained HTML report (io/html.py)."""

import base64
import errno
import json
import os
import stat

import pytest

from sgdyn.validation.io import rundir as rd_mod
from sgdyn.validation.io.html import markdown_to_html
from sgdyn.validation.io.rundir import MANIFEST, RunDir, RunDirError, atomic_write_bytes


def _finished(path, config, files=("a.png", "b.png"), keep=()):
    rd = RunDir(path, config, command="test", keep=keep)
    assert rd.start() is False
    for f in files:
        rd.write_bytes(f, b"old " + f.encode())
    rd.finish({"x": 1}, arrays={"v": [1.0, 2.0]}, report="# old\n")
    return rd


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_are_created_with_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"x")
        rd_mod.write_json(tmp_path / "s.json", {"a": 1})
    finally:
        os.umask(old)
    for f in ("f.bin", "s.json"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == mode
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_same_config_is_done_other_config_refused_and_nothing_touched(tmp_path):
    out = tmp_path / "run"
    _finished(out, {"seed": 0})
    assert RunDir(out, {"seed": 0}, command="test").start() is True
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(RunDirError, match="--force"):
        RunDir(out, {"seed": 1}, command="test").start()
    with pytest.raises(RunDirError, match="finished test run"):
        RunDir(
            out, {"seed": 1}, command="simulate"
        ).check()  # message names the finished run's command
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_another_command_with_the_same_config_is_refused(tmp_path):
    out = tmp_path / "run"
    _finished(out, {"seed": 0})
    with pytest.raises(RunDirError, match="different settings"):
        RunDir(out, {"seed": 0}, command="flatness-grid").start()


def test_interrupted_force_rerun_leaves_an_unfinished_folder_not_a_mix(tmp_path):
    out = tmp_path / "run"
    _finished(out, {"seed": 0}, files=("a.png", "b.png", "capture.pt"))
    rd = RunDir(out, {"seed": 1}, command="test", force=True, keep=("capture.pt",))
    assert rd.start() is False
    # the old run is invalidated *before* anything of the new run is written
    names = {p.name for p in out.iterdir()}
    assert "summary.json" not in names and "a.png" not in names and "report.html" not in names
    assert "capture.pt" in names  # a declared checkpoint (it carries its own key)
    rd.write_bytes("a.png", b"new")  # ... and then the new run is interrupted
    assert RunDir(out, {"seed": 0}, command="test").check() == "new"  # unfinished
    # the next run removes the interrupted run's files and lists only its own at the end
    rd2 = RunDir(out, {"seed": 2}, command="test", keep=("capture.pt",))
    assert rd2.start() is False
    assert not (out / "a.png").exists()
    s = rd2.finish({"y": 2}, report="# new\n")
    assert s["files"] == ["capture.pt", "report.html", "report.md", "summary.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(s["files"] + [MANIFEST])
    assert json.loads((out / "summary.json").read_text())["config"] == {"seed": 2}


def test_refuses_a_folder_that_is_not_a_run_directory(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(RunDirError, match="not an sgdyn run directory"):
        RunDir(tmp_path, {}, command="test").start()
    assert (tmp_path / "mine.txt").read_text() == "user data"


def test_unreadable_summary_is_refused_without_force(tmp_path):
    out = tmp_path / "run"
    _finished(out, {"seed": 0})
    (out / "summary.json").write_text("{not json")
    with pytest.raises(RunDirError, match="unreadable summary.json"):
        RunDir(out, {"seed": 0}, command="test").start()
    assert RunDir(out, {"seed": 0}, command="test", force=True).start() is False


def test_file_system_errors_are_one_clear_line(tmp_path, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunDirError, match="exists and is not a folder"):
        RunDir(f, {}, command="test").start()
    with pytest.raises(RunDirError, match="exists and is not a folder"):
        RunDir(f / "sub", {}, command="test").start()
    real_open = os.open

    def full(path, *a, **k):
        if str(path).endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, *a, **k)

    monkeypatch.setattr(rd_mod.os, "open", full)
    with pytest.raises(RunDirError) as e:
        atomic_write_bytes(tmp_path / "x.json", b"{}")
    assert "No space left on device" in str(e.value) and "x.json" in str(e.value)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "x.json").exists()


def test_html_report_renders_markdown_and_embeds_figures(tmp_path):
    png = bytes.fromhex("89504e470d0a1a0a") + b"fake png payload"
    (tmp_path / "fig.png").write_bytes(png)
    (tmp_path.parent / "outside.png").write_bytes(png)
    md = "\n".join(
        [
            "# Title with `code_span*`",
            "",
            "Some **bold**, *italic* text, sigma_i^2 * F and <script>alert(1)</script>.",
            "A second line of the same paragraph with [a link](https://example.org).",
            "",
            "| quantity | measured |",
            "|---|---|",
            "| psi | 2.3 +- 0.1 |",
            "| a <b> | x |",
            "",
            "- item one",
            "- item two",
            "",
            "1. first",
            "2. second",
            "",
            "![Fig 1](fig.png)",
            "![missing](nope.png)",
            "![escape](../outside.png)",
            "",
            "```",
            "code <kept> **as is**",
            "```",
        ]
    )
    html = markdown_to_html(md, base_dir=tmp_path, title="t")
    assert html.startswith("<!DOCTYPE html>")
    assert "<h1>Title with <code>code_span*</code></h1>" in html
    assert "<strong>bold</strong>" in html and "<em>italic</em>" in html
    assert "sigma_i^2 * F" in html  # a lone '*' is not emphasis
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<a href="https://example.org">a link</a>' in html
    assert "<th>quantity</th><th>measured</th>" in html
    assert "<td>psi</td><td>2.3 +- 0.1</td>" in html and "<td>a &lt;b&gt;</td>" in html
    assert "<ul><li>item one</li><li>item two</li></ul>" in html
    assert "<ol><li>first</li><li>second</li></ol>" in html
    b64 = base64.b64encode(png).decode()
    assert html.count(b64) == 1  # fig.png embedded, ../outside.png not
    assert "figure nope.png not embedded" in html and "figure ../outside.png not embedded" in html
    assert "<pre><code>code &lt;kept&gt; **as is**</code></pre>" in html
    assert html.count("<p>") == 2  # the two-line paragraph and the image paragraph


def test_owned_tensors_save_only_their_own_elements(tmp_path):
    """torch.save writes a view's whole storage: owned() copies views out, leaves the rest."""
    import io

    import torch

    from sgdyn.validation.io import owned, owned_tree

    buf = torch.randn(16, 100, 50)
    view, whole = buf[3], torch.randn(7)
    assert owned(whole).data_ptr() == whole.data_ptr()  # not copied
    tree = owned_tree({"traj": view, "cps": [{"w": buf[0, :2]}], "n": 3, "t": (view,)})
    for t in (tree["traj"], tree["cps"][0]["w"], tree["t"][0]):
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
    assert torch.equal(tree["traj"], view) and tree["n"] == 3 and isinstance(tree["t"], tuple)

    def size(obj):
        b = io.BytesIO()
        torch.save(obj, b)
        return len(b.getvalue())

    assert size(view) > 10 * size(tree["traj"])
