"""The HTML report in a real browser: headless Chromium renders it with no console error and draws its charts.

Chromium comes from the system packages (``apt-get install chromium``); where it is absent the
test is skipped and says so. "Charts drawn" is read off the screenshot: each chart colour must
cover real pixels, which an unparsed or empty SVG would not.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from audit.report import charts
from audit.report.html import render_html
from audit.report.weekly import build_weekly
from test_store_history import NOW, build_history

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="headless Chromium is not installed "
                                "(apt-get install chromium); the browser render of the HTML report is not checked")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0"]


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on *page* with a fresh profile; stdout/stderr captured."""
    return subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=180)


def png_pixels(path: Path) -> np.ndarray:
    """The RGB pixels (height x width x 3) of an 8-bit RGB or RGBA PNG, decoded with zlib and numpy."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG layout {header}"
    ch = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, width * ch + 1)
    out = np.zeros((height, width, ch), dtype=np.uint8)
    prev = np.zeros((width, ch), dtype=np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].reshape(width, ch).astype(np.int32)
        if kind == 1:  # sub: running sum along the row
            line = np.cumsum(line, axis=0) & 0xFF
        elif kind == 2:  # up
            line = (line + prev) & 0xFF
        elif kind in (3, 4):  # average / Paeth need the byte just decoded: plain Python, byte by byte
            cur, up = line.reshape(-1).tolist(), prev.reshape(-1).tolist()
            for i in range(len(cur)):
                a = cur[i - ch] if i >= ch else 0
                if kind == 3:
                    cur[i] = (cur[i] + ((a + up[i]) >> 1)) & 0xFF
                    continue
                b, c = up[i], (up[i - ch] if i >= ch else 0)
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
            line = np.array(cur, dtype=np.int32).reshape(width, ch)
        out[y] = line
        prev = line
    return out[:, :, :3]


def colour_count(pixels: np.ndarray, hex_colour: str, tolerance: int = 4) -> int:
    want = np.frombuffer(bytes.fromhex(hex_colour.lstrip("#")), dtype=np.uint8).astype(np.int16)
    return int(np.all(np.abs(pixels.astype(np.int16) - want) <= tolerance, axis=2).sum())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    store = build_history(folder / "audit.sqlite")
    page = folder / "weekly.html"
    page.write_text(render_html(build_weekly(store, since="7d", until=NOW)), encoding="utf-8")
    store.close()
    shot = folder / "shot.png"
    proc = chromium(page, folder / "profile-shot", f"--screenshot={shot}", "--window-size=1100,4200")
    dom = chromium(page, folder / "profile-dom", "--dump-dom")
    return page, shot, proc, dom


def test_the_page_renders_without_console_errors(rendered):
    page, shot, proc, dom = rendered
    assert shot.is_file(), f"no screenshot; Chromium said:\n{proc.stderr[-3000:]}"
    for run in (proc, dom):
        console = [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
        assert console == [], "\n".join(console)  # script errors, CSP violations, blocked loads


def test_the_dom_has_the_charts_and_no_script(rendered):
    _, _, _, dom = rendered
    html = dom.stdout
    assert "<h1>Weekly quality report: tinyclf</h1>" in html
    assert len(re.findall(r"<svg class=\"chart (?:line|bars|spark)\"", html)) >= 8
    assert "<script" not in html  # the hostile test name stayed text
    assert "&lt;script&gt;alert" in html


def test_the_charts_are_drawn(rendered):
    _, shot, _, _ = rendered
    pixels = png_pixels(shot)
    assert pixels.shape == (4200, 1100, 3)
    drawn = {name: colour_count(pixels, colour) for name, colour in (
        ("flaky trend line", charts.FLAKY_COLOUR), ("mutation score line", charts.SCORE_COLOUR),
        ("score bars", charts.BAR_COLOUR), ("rate sparklines", charts.SPARK_COLOUR))}
    assert drawn["score bars"] > 5000, drawn
    assert all(n > 150 for n in drawn.values()), drawn


def test_a_script_error_would_be_caught(tmp_path):
    """The console check above can fail: a page with a broken script shows up in Chromium's log."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>notDefinedAnywhere();</script></body></html>")
    proc = chromium(page, tmp_path / "profile", "--dump-dom")
    assert any(":CONSOLE" in ln and "notDefinedAnywhere" in ln for ln in proc.stderr.splitlines()), proc.stderr[-2000:]
