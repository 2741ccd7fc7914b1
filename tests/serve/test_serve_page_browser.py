"""The upload page in a real headless Chromium (Debian's ``chromium`` package, driven by Playwright) against the real
server: upload, the boxes drawn on the canvas and the table equal the API's answer; an error is shown, not thrown.

Skips when Playwright or a Chromium binary is missing (``apt-get install chromium`` and ``pip install playwright``;
Playwright's own browser download is not used).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from darknet_torch.client import predict_response

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")


@pytest.fixture(scope="module")
def page(cli_server: str):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            tab.goto(cli_server + "/")
            yield tab
            assert not [e for e in errors if "Failed to load resource" not in e], errors  # no script errors
        finally:
            browser.close()


def test_upload_draws_the_api_boxes(page, cli_server: str, dog_jpg: Path, tmp_path: Path) -> None:
    expected = predict_response(cli_server, dog_jpg)
    page.set_input_files("#image", str(dog_jpg))
    page.click("#detect")
    sync_api.expect(page.locator("#status")).to_contain_text("detection(s)", timeout=30_000)
    assert page.text_content("#status").startswith(f"{len(expected['detections'])} detection(s)")
    rows = page.eval_on_selector_all("#rows tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    by_score = sorted(expected["detections"], key=lambda d: -d["score"])  # the table lists the best first
    assert [(r[0], float(r[1])) for r in rows] == [(d["name"], pytest.approx(d["score"], abs=5e-4)) for d in by_score]
    assert page.eval_on_selector("#canvas", "c => [c.width, c.height]") == [expected["width"], expected["height"]]
    # The dog's box is stroked in its class colour: read a pixel on its left edge, halfway down.
    dog = next(d for d in expected["detections"] if d["name"] == "dog")
    x, y = round(dog["box"]["left"]), round((dog["box"]["top"] + dog["box"]["bottom"]) / 2)
    pixel = page.evaluate(f"Array.from(document.getElementById('canvas').getContext('2d')"
                          f".getImageData({x}, {y}, 1, 1).data)")
    colour = page.evaluate(f"""(() => {{ const c = document.createElement('canvas').getContext('2d');
        c.fillStyle = colour({dog['class_id']}); c.fillRect(0, 0, 1, 1);
        return Array.from(c.getImageData(0, 0, 1, 1).data); }})()""")
    assert max(abs(a - b) for a, b in zip(pixel, colour)) <= 2, (pixel, colour)
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)


def test_error_is_shown_on_the_page(page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_bytes(b"not an image at all")
    page.set_input_files("#image", str(notes))
    page.click("#detect")
    sync_api.expect(page.locator("#status")).to_contain_text("Error", timeout=30_000)
    assert page.text_content("#status") == "Error 400: upload: not a recognised image format (19 bytes)"
    assert page.get_attribute("#status", "class") == "error"
