"""Open an HTML file in headless Chromium: errors it logs, the figures it draws, a screenshot.

Used by the report test. Chromium (Debian's ``chromium``) is started with
--headless and a fresh profile; a small script injected at the top of a copy
of the page records console errors, script errors and failed resource loads,
and on ``load`` writes the state of every ``<img>`` into the DOM, which
``--dump-dom`` prints. Any ``CONSOLE`` line Chromium logs is an error too:
the report itself has no scripts, so it must log nothing.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

_PROBE = """<script>
window.__bayesmlm_errors = [];
(function () {
  const orig = console.error;
  console.error = function (...a) { window.__bayesmlm_errors.push('console.error: ' + a.join(' ')); orig.apply(console, a); };
  window.addEventListener('error', function (e) {
    const t = e.target;
    window.__bayesmlm_errors.push(t && t !== window ? 'failed to load: ' + (t.src || t.href || t.tagName) : 'error: ' + e.message);
  }, true);
  window.addEventListener('unhandledrejection', function (e) { window.__bayesmlm_errors.push('rejection: ' + e.reason); });
  window.addEventListener('load', function () {
    const images = Array.from(document.images).map(function (im) {
      return {alt: im.alt, complete: im.complete, naturalWidth: im.naturalWidth, naturalHeight: im.naturalHeight,
              shownWidth: im.getBoundingClientRect().width};
    });
    const out = document.createElement('pre');
    out.id = 'bayesmlm-probe';
    out.textContent = JSON.stringify({errors: window.__bayesmlm_errors, images: images, title: document.title,
                                      sections: document.querySelectorAll('section').length});
    document.body.appendChild(out);
  });
})();
</script>"""


def find_chromium() -> str | None:
    """The Chromium binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(chromium: str, extra: list[str], url: str, timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="bayesmlm-chromium-") as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", *extra, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def probe(page: Path, chromium: str, timeout: float = 90) -> dict:
    """Load a copy of ``page`` with the probe script; return what it recorded, plus Chromium's console lines."""
    text = page.read_text(encoding="utf-8")
    probed = re.sub(r"<head>", "<head>\n" + _PROBE, text, count=1)
    copy = page.with_name(page.stem + ".probe.html")
    copy.write_text(probed, encoding="utf-8")
    proc = _run(chromium, ["--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom"],
                copy.resolve().as_uri(), timeout)
    m = re.search(r'<pre id="bayesmlm-probe">(.*?)</pre>', proc.stdout, re.S)
    if not m:
        raise RuntimeError(f"The probe did not run (exit {proc.returncode}). stderr:\n{proc.stderr[-3000:]}")
    result = json.loads(html.unescape(m.group(1)))
    result["console"] = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return result


def screenshot(page: Path, out: Path, chromium: str, size=(1200, 6000), timeout: float = 90) -> Path:
    """A PNG screenshot of ``page`` (the whole of a tall window) at ``out``."""
    proc = _run(chromium, ["--hide-scrollbars", f"--window-size={size[0]},{size[1]}", f"--screenshot={out}"],
                page.resolve().as_uri(), timeout)
    if not out.is_file():
        raise RuntimeError(f"No screenshot (exit {proc.returncode}). stderr:\n{proc.stderr[-3000:]}")
    return out
