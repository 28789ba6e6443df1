"""The explorer notebook in JupyterLab and the static report, opened in headless Chromium.

The explorer runs on the smoke profile with live pruning on 20 images (``CARLIB_BROWSER_PROFILE``
and ``CARLIB_EXPLORER_IMAGES`` change them); set ``CARLIB_SCREENSHOT_DIR`` to keep the
screenshots. ``docs/explorer.png`` was taken with ``CARLIB_BROWSER_PROFILE=default
CARLIB_EXPLORER_IMAGES=100``, ``docs/report.png`` from the committed default report.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from browser import REPO, chromium_page, jupyter_lab, require_browser
from conftest import requires_tiny

PROFILE = os.environ.get("CARLIB_BROWSER_PROFILE", "smoke")
#: generous limits (ms) for a loaded machine; the whole test takes well under a minute on an idle one
LONG = 1000 * int(os.environ.get("CARLIB_BROWSER_TIMEOUT_S", "600"))


def _keep(src: Path, name: str) -> None:
    out = os.environ.get("CARLIB_SCREENSHOT_DIR")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, Path(out) / name)


@requires_tiny
def test_explorer_in_jupyterlab(tmp_path):
    require_browser()
    import carlib
    from carlib.analysis.explorer import subset_indices
    from carlib.analysis.study import Study

    t0 = time.time()

    def step(what: str) -> None:  # progress, shown with pytest -s
        print(f"[{time.time() - t0:5.1f} s] {what}", flush=True)

    root = tmp_path / "lab"
    root.mkdir()
    shutil.copyfile(REPO / "notebooks" / "explore.ipynb", root / "explore.ipynb")
    n_images = int(os.environ.get("CARLIB_EXPLORER_IMAGES", "20"))  # small: the test stays quick
    env = {"CARLIB_PROFILE": PROFILE, "CARLIB_EXPLORER_IMAGES": str(n_images)}
    with jupyter_lab(root, env) as (url, token), chromium_page() as page:
        try:
            page.set_default_timeout(LONG)
            page.goto(f"{url}/lab/tree/explore.ipynb?token={token}")
            page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook')",
                                   timeout=LONG)
            page.wait_for_function("() => { const w = window.jupyterapp.shell.currentWidget;"
                                   " return w && w.sessionContext && w.sessionContext.session &&"
                                   " w.sessionContext.session.kernel &&"
                                   " w.sessionContext.session.kernel.connectionStatus === 'connected'; }",
                                   timeout=LONG)
            step("notebook open, kernel connected")
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector(".carlib-explorer .carlib-idle", timeout=LONG)
            page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                                   ".some(e => e.textContent.includes('checks passed'))", timeout=LONG)
            step("all cells ran")
            # a filter: its CAR as car_index computes it on the profile's CAR images
            study = Study(PROFILE, progress=False)
            car = carlib.car_index(study.model, "conv1", study.data, filters=[5], progress=False).set_index("filter")["car"]
            page.select_option(".carlib-filter select", index=5)
            page.wait_for_function("() => document.querySelector('.carlib-info').textContent.includes('conv1 filter 5')",
                                   timeout=LONG)
            page.wait_for_selector(".carlib-explorer .carlib-idle", timeout=LONG)
            step("filter 5 selected")
            assert page.inner_text(".carlib-car") == f"{100 * car[5]:+.2f} pp"
            assert page.inner_text(".carlib-label") in ("color-selective", "shape-selective")
            grid_before = page.get_attribute(".carlib-grid", "src")
            # prune two filters: the busy state shows, then the accuracy car_index gives
            page.evaluate("() => { window.sawBusy = false; new MutationObserver(() => {"
                          " if (document.querySelector('.carlib-busy')) window.sawBusy = true; })"
                          ".observe(document.body, {subtree: true, childList: true}); }")
            page.select_option(".carlib-prune-select select", index=[3, 7])
            page.click(".carlib-prune")
            step("prune clicked")
            page.wait_for_selector(".carlib-car-progress[data-done='62']", timeout=LONG)
            page.wait_for_selector(".carlib-explorer .carlib-idle", timeout=LONG)
            step("pruned")
            assert page.evaluate("() => window.sawBusy")
            images = study.greedy_data.subset(subset_indices(len(study.greedy_data), n_images))
            ref = carlib.car_index(study.model, "conv1", images, filters=[5], pruned=[3, 7], progress=False)
            acc = page.locator(".carlib-accuracy")
            correct, n = int(acc.get_attribute("data-correct")), int(acc.get_attribute("data-n"))
            assert n == len(images) and correct / n == ref.attrs["base_accuracy"]
            assert f"{correct}/{n}" in acc.inner_text()
            assert page.inner_text(".carlib-car-live") == f"{100 * ref['car'].iloc[0]:+.2f} pp"
            # the grid was redrawn, and every image on the page has loaded
            assert page.get_attribute(".carlib-grid", "src") != grid_before
            assert page.evaluate("() => [...document.querySelectorAll('.carlib-explorer img')]"
                                 ".every(i => i.complete && i.naturalWidth > 0)")
            assert not re.search(r"Traceback|Error", page.inner_text(".carlib-explorer"))
            shot = tmp_path / "explorer.png"
            page.locator(".carlib-explorer").screenshot(path=str(shot))
            _keep(shot, "explorer.png")
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            _keep(tmp_path / "failure.png", "explorer-failure.png")
            raise
    print(f"browser test: {time.time() - t0:.0f} s")


def _check_page(page, path: Path, shot: Path) -> None:
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    n = page.evaluate("() => document.images.length")
    broken = page.evaluate("() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
                           ".map(i => i.alt)")
    assert n > 0 and broken == [], broken
    assert page.console_errors == []
    assert "The paper's claims and this run" in page.inner_text("h2")
    page.screenshot(path=str(shot))


@requires_tiny
def test_report_in_chromium(tmp_path, monkeypatch):
    """The smoke report built here and the committed default report: every image loads, no
    console error."""
    require_browser()
    from test_report import smoke_report

    path, _, _ = smoke_report(tmp_path, monkeypatch)
    committed = REPO / "report" / "default" / "index.html"
    with chromium_page(viewport=(1200, 900)) as page:
        _check_page(page, path, tmp_path / "report-smoke.png")
        if committed.is_file():
            _check_page(page, committed, tmp_path / "report.png")
            _keep(tmp_path / "report.png", "report.png")
