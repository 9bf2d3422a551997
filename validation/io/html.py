"""``report.md`` -> a self-contained ``report.html`` (figures embedded as base64 PNG).

A minimal converter for the markdown the reports use, kept here instead of a dependency so
that the GPU machines (installed with ``--no-deps``, no network) write the same files:
ATX headings, paragraphs, pipe tables, ``-``/``*``/``1.`` lists, fenced code, and inline
code, images, links, ``**bold**`` and ``*italic*``. Everything else is escaped text, never
raw HTML. Images are embedded only from files inside ``base_dir`` (no path escapes).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;"
    "line-height:1.45}table{border-collapse:collapse;margin:1em 0}"
    "th,td{border:1px solid #bbb;padding:.25em .6em;text-align:left}th{background:#eee}"
    "img{max-width:100%}code,pre{background:#f4f4f4}pre{padding:.6em;overflow:auto}"
)


def _data_uri(src: str, base_dir: Path | None) -> str | None:
    if base_dir is None or "://" in src or src.startswith("data:"):
        return None
    base = Path(base_dir).resolve()
    f = (base / src).resolve()
    if base not in f.parents or not f.is_file() or f.suffix.lower() not in _MIME:
        return None
    return f"data:{_MIME[f.suffix.lower()]};base64," + base64.b64encode(f.read_bytes()).decode()


def _inline(text: str, base_dir: Path | None) -> str:
    """Escape ``text`` and render the inline markup (module docstring)."""
    spans: list[str] = []

    def stash(s: str) -> str:
        spans.append(s)
        return f"\x00{len(spans) - 1}\x00"

    text = re.sub(r"`([^`]+)`", lambda m: stash(f"<code>{html.escape(m[1])}</code>"), text)

    def image(m):
        alt, src = m[1], m[2]
        uri = _data_uri(src, base_dir)
        if uri is None:
            return stash(f"<em>[figure {html.escape(src)} not embedded: {html.escape(alt)}]</em>")
        return stash(f'<img alt="{html.escape(alt)}" src="{uri}">')

    text = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", image, text)
    text = re.sub(
        r"\[([^\]]+)\]\(([^)\s]+)\)",
        lambda m: stash(f'<a href="{html.escape(m[2])}">{html.escape(m[1])}</a>'),
        text,
    )
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])", r"<em>\1</em>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: spans[int(m[1])], text)


def _cells(row: str) -> list[str]:
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|"):
        row = row[:-1]
    return [c.strip() for c in row.split("|")]


_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_LIST = re.compile(r"^\s*(?:([-*])|(\d+)\.)\s+(.*)$")


def markdown_to_html(md: str, *, base_dir=None, title: str = "report") -> str:
    """Render ``md`` (the subset in the module docstring) to a standalone HTML page."""
    lines = md.split("\n")
    out: list[str] = []
    para: list[str] = []
    i = 0

    def flush():
        if para:
            out.append("<p>" + _inline(" ".join(para), base_dir) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre><code>" + html.escape("\n".join(lines[i + 1 : j])) + "</code></pre>")
            i = j + 1
            continue
        h = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if h:
            flush()
            n = len(h[1])
            out.append(f"<h{n}>{_inline(h[2], base_dir)}</h{n}>")
            i += 1
            continue
        if "|" in line and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]):
            flush()
            head = "".join(f"<th>{_inline(c, base_dir)}</th>" for c in _cells(line))
            rows = []
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                cells = "".join(f"<td>{_inline(c, base_dir)}</td>" for c in _cells(lines[i]))
                rows.append(f"<tr>{cells}</tr>")
                i += 1
            out.append(
                f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            )
            continue
        m = _LIST.match(line)
        if m:
            flush()
            tag = "ul" if m[1] else "ol"
            items = []
            while (
                i < len(lines)
                and (m := _LIST.match(lines[i]))
                and (("ul" if m[1] else "ol") == tag)
            ):
                item = [m[3]]
                i += 1
                while i < len(lines) and lines[i].startswith("  ") and not _LIST.match(lines[i]):
                    item.append(lines[i].strip())
                    i += 1
                items.append(f"<li>{_inline(' '.join(item), base_dir)}</li>")
            out.append(f"<{tag}>{''.join(items)}</{tag}>")
            continue
        if not line.strip():
            flush()
        else:
            para.append(line.strip())
        i += 1
    flush()
    body = "\n".join(out)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )
