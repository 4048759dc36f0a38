"""The interactive page: self-contained, its data right, and — in a real headless chromium — equal to Python's trajectories."""

from __future__ import annotations

import json
import os
import re
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lrkit
from lrkit.errors import LandscapeError
from lrkit.landscape import descend
from lrkit.landscape.page import PAGE_SCHEDULES, page_data, page_html, page_schedule, page_surfaces, page_trajectory, write_page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def test_page_is_one_self_contained_file() -> None:
    html = page_html(steps=30)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the page must not load anything from the network"
    assert "<script src" not in html and "__LRKIT_" not in html
    data = json.loads(re.search(r'<script id="lrkit-data" type="application/json">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert data["steps"] == 30 and set(data["schedules"]) == set(PAGE_SCHEDULES)
    assert set(data["surfaces"]) == set(page_surfaces())


@pytest.mark.parametrize("kind", PAGE_SCHEDULES)
def test_page_schedules_are_lrkit_schedules_with_peak_one(kind: str) -> None:
    values = np.asarray(page_data(steps=80)["schedules"][kind])
    np.testing.assert_array_equal(values, page_schedule(kind, 80).values(np.arange(80)))
    assert values.max() == pytest.approx(1.0, abs=1e-12) and values.min() >= 0


def test_page_trajectory_is_descend_with_the_scaled_schedule() -> None:
    settings = {
        "surface": "himmelblau",
        "optimizer": "rmsprop",
        "lr": 0.03,
        "momentum": 0.5,
        "schedule": "one_cycle",
        "start": [0.5, -1.0],
        "steps": 40,
    }
    t = page_trajectory(settings)
    ref = descend("himmelblau", "rmsprop", 0.03 * lrkit.one_cycle(peak=1.0, total_steps=40), steps=40, start=[0.5, -1.0], momentum=0.5)
    np.testing.assert_array_equal(t.points, ref.points)
    # the momentum slider means nothing to plain SGD and AdaGrad
    assert page_trajectory({**settings, "optimizer": "adagrad"}).momentum is None
    heavy = page_trajectory({**settings, "optimizer": "momentum"})
    assert heavy.optim == lrkit.Optim("sgd", momentum=0.5) and heavy.optimizer == "momentum"


def test_the_page_reads_each_menu_labels_hyperparameters_from_its_optim() -> None:
    optims = page_data(steps=10)["optims"]
    assert list(optims) == list(page_data(steps=10)["optimizers"])
    assert lrkit.Optim.from_dict(optims["momentum"]) == lrkit.Optim("sgd", momentum=0.9)
    assert (optims["adamw"]["weight_decay"], optims["rmsprop"]["beta2"], optims["adagrad"]["eps"]) == (1e-2, 0.99, 1e-10)


def test_write_page_and_bad_input(tmp_path: Path) -> None:
    assert write_page(tmp_path / "p.html", steps=10).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(LandscapeError, match=r"must end in \.html"):
        write_page(tmp_path / "p.txt")
    with pytest.raises(LandscapeError, match="integer in"):
        page_html(steps=0)
    with pytest.raises(LandscapeError, match="'constant', 'cosine'"):
        page_schedule("triangle", 10)
    with pytest.raises(LandscapeError, match="lacks"):
        page_trajectory({"surface": "saddle"})


# -- the real browser -------------------------------------------------------------------------------
def _chromium_or_fail() -> None:
    if os.environ.get("LRKIT_SKIP_BROWSER") == "1":
        pytest.skip("LRKIT_SKIP_BROWSER=1")
    if not CHROMIUM.exists():
        pytest.fail(
            f"Debian's chromium is missing at {CHROMIUM}: install it with `make browser` "
            "(apt-get install -y chromium), or set LRKIT_SKIP_BROWSER=1 to skip the browser test"
        )


def test_a_missing_chromium_fails_the_browser_test_instead_of_skipping_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(globals(), "CHROMIUM", Path("/nonexistent/chromium"))
    monkeypatch.delenv("LRKIT_SKIP_BROWSER", raising=False)
    with pytest.raises(pytest.fail.Exception, match="chromium is missing"):
        _chromium_or_fail()
    monkeypatch.setenv("LRKIT_SKIP_BROWSER", "1")
    with pytest.raises(pytest.skip.Exception):
        _chromium_or_fail()


def _compare(js: dict[str, Any], settings: dict[str, Any]) -> float:
    """The largest difference between the browser's trajectory and Python's for the same settings."""
    py = page_trajectory(settings)
    points = np.asarray(js["points"], dtype=np.float64)
    assert points.shape == py.points.shape and js["diverged"] == py.diverged
    np.testing.assert_allclose(js["lrs"], py.lrs, rtol=1e-12, atol=0)
    np.testing.assert_allclose(js["losses"], py.losses, rtol=1e-6, atol=1e-6)
    diff = float(np.abs(points - py.points).max())
    assert diff <= 1e-6
    return diff


@pytest.mark.browser
def test_page_in_headless_chromium_moves_the_slider_and_matches_python(tmp_path: Path) -> None:
    _chromium_or_fail()
    from playwright.sync_api import sync_playwright

    path = write_page(tmp_path / "landscape.html", steps=150)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            page.wait_for_function("window.lrkit && window.lrkit.redraws >= 1")
            page.select_option("#surface", "quadratic_rotated")
            page.select_option("#optimizer", "adam")
            page.select_option("#schedule", "cosine")
            before = page.evaluate("window.lrkit.trajectory")
            pixels = page.evaluate("document.getElementById('plane').toDataURL()")
            _compare(before, page.evaluate("window.lrkit.settings"))

            # move the step-size slider with the mouse, as a user would
            box = page.locator("#lr").bounding_box()
            assert box is not None
            lr_before = page.evaluate("window.lrkit.settings.lr")
            page.mouse.click(box["x"] + 0.55 * box["width"], box["y"] + box["height"] / 2)
            settings = page.evaluate("window.lrkit.settings")
            after = page.evaluate("window.lrkit.trajectory")
            assert settings["lr"] < lr_before
            assert after["points"] != before["points"], "the trajectory did not change with the slider"
            assert page.evaluate("document.getElementById('plane').toDataURL()") != pixels, "the drawing did not change"
            diff = _compare(after, settings)

            # one more notch by keyboard, with momentum SGD this time
            page.select_option("#optimizer", "momentum")
            page.locator("#lr").press("ArrowLeft")
            diff = max(diff, _compare(page.evaluate("window.lrkit.trajectory"), page.evaluate("window.lrkit.settings")))

            times = [page.evaluate("(() => { window.lrkit.redraw(); return window.lrkit.redrawMs; })()") for _ in range(15)]
            page.screenshot(path=str(tmp_path / "landscape.png"))
            print(f"\nbrowser vs python: max |Δx| = {diff:.2e}; redraw median {statistics.median(times):.1f} ms, max {max(times):.1f} ms")
            assert (tmp_path / "landscape.png").stat().st_size > 10_000
            assert statistics.median(times) < 1000, "redraws should take milliseconds (target < 100 ms)"
            assert not errors, errors
        finally:
            browser.close()
