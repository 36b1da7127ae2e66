"""The tiny CI run's report in real headless Chromium: every image decodes, no console errors, every section of the
contents is on the page, nothing overflows a laptop-width window; a screenshot is kept in the test's temp dir."""

import base64
import json
import re

import pytest

from chromium_devtools import Browser, find_chromium

pytestmark = pytest.mark.workflow

LAPTOP = {"width": 1366, "height": 768}
PAGE_STATE = """JSON.stringify({
  images: Array.from(document.images).map(i => ({alt: i.alt.slice(0, 80), width: i.naturalWidth, done: i.complete})),
  sections: Array.from(document.querySelectorAll("main > section")).map(s => ({id: s.id, height: s.offsetHeight})),
  toc: Array.from(document.querySelectorAll("nav#toc a")).map(a => a.getAttribute("href")),
  pageWidth: document.documentElement.scrollWidth,
  pageHeight: document.documentElement.scrollHeight,
  windowWidth: window.innerWidth,
})"""


def _expected_sections(repo) -> list[str]:
    """Every contents entry of the template that has a section file: the tiny run feeds all of them."""
    template = (repo / "report/template.html.j2").read_text()
    listed = re.findall(r'\(\s*"(\w+)",\s*"', template[template.index("{% set toc"):])
    return [name for name in listed if (repo / f"report/sections/{name}.html.j2").is_file()]


def _console_errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            errors.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"]["text"])
    return errors


def browser_state(report, out_dir):
    """Load ``report`` at laptop size; return the page state, the console errors and the screenshot's path."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium); the browser check needs it")
    browser = Browser(chromium, out_dir / "profile")
    try:
        for domain in ("Page", "Runtime", "Log"):
            browser.call(f"{domain}.enable")
        browser.call("Emulation.setDeviceMetricsOverride", deviceScaleFactor=1, mobile=False, **LAPTOP)
        browser.events.clear()
        browser.call("Page.navigate", url=report.as_uri())
        browser.wait_for("Page.loadEventFired")
        state = json.loads(browser.call("Runtime.evaluate", expression=PAGE_STATE, returnByValue=True)["result"]["value"])
        shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": LAPTOP["width"], "height": min(state["pageHeight"], 16000),
                                  "scale": 1})
        screenshot = out_dir / "report.png"
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return state, _console_errors(browser.events), screenshot
    finally:
        browser.close()


def test_report_renders_in_chromium(tiny_run, repo, tmp_path):
    state, errors, screenshot = browser_state(tiny_run / "results/report/index.html", tmp_path)
    print(f"screenshot: {screenshot}")
    assert state["images"], "the report shows no image"
    broken = [image["alt"] for image in state["images"] if not image["done"] or image["width"] == 0]
    assert not broken, f"images that did not load: {broken}"
    assert errors == [], f"console errors: {errors}"
    present = {section["id"] for section in state["sections"] if section["height"] > 0}
    missing = [name for name in _expected_sections(repo) if name not in present]
    assert not missing, f"sections missing from the page: {missing}"
    assert state["toc"] == [f"#{section['id']}" for section in state["sections"]]
    assert state["pageWidth"] <= state["windowWidth"], "the page scrolls sideways on a laptop-width window"
    assert screenshot.stat().st_size > 10_000
