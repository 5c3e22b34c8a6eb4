"""Each UI workflow loads in the real ComfyUI page (headless Chromium) with no missing node and
its widget values intact; a screenshot of each is kept in test-artifacts/."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import pytest

from comfy_host import REPO, ComfyHost
from video_clips import write_clip

pytestmark = [pytest.mark.host, pytest.mark.browser]

UI_FILES = sorted((REPO / "workflows").glob("*.json"))
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Flags for a closed network (no background connections) and a root user (no sandbox).
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=2000,1100")

LOAD_AND_INSPECT = """
const done = arguments[arguments.length - 1];
const workflow = arguments[0];
(async () => {
  try {
    await window.app.loadGraphData(workflow);
    await new Promise(r => setTimeout(r, 500));
    const graph = window.app.graph;
    const nodes = graph._nodes || graph.nodes;
    const registered = window.LiteGraph.registered_node_types;
    done({
      count: nodes.length,
      missing: nodes.filter(n => !(n.type in registered)).map(n => n.type),
      errors: nodes.filter(n => n.has_errors).map(n => n.type),
      widgets: Object.fromEntries(nodes.map(n => [n.id, (n.widgets || []).map(w => w.value)])),
      links: Object.keys(graph.links instanceof Map ? Object.fromEntries(graph.links) : graph.links).length,
    });
  } catch (e) { done({exception: String(e && e.stack || e)}); }
})();
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from selenium import webdriver

    for tool in (CHROMIUM, CHROMEDRIVER):
        if not Path(tool).exists():
            raise RuntimeError(f"{tool} is missing: `make setup` installs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def open_app(driver, host: ComfyHost, timeout: float = 120.0) -> None:
    # A first visit opens the templates browser over the canvas; mark the tour as done.
    host.post("/settings/Comfy.TutorialCompleted", True)
    # Otherwise each reload restores the previous test's workflow asynchronously, and it can land
    # on top of the one loaded here (seen once: the aligned workflow inspected as the photo one).
    host.post("/settings/Comfy.Workflow.Persist", False)
    # What the screenshots are for: node text at any zoom (no level-of-detail boxes) and no
    # minimap over the graph.
    host.post("/settings/LiteGraph.Canvas.MinFontSizeForLOD", 0)
    host.post("/settings/Comfy.Minimap.Visible", False)
    driver.get(host.url)
    # Newer pages announce "Nodes 2.0" in a banner over the graph until dismissed (a flag in the
    # page's local storage, one per host origin).
    if driver.execute_script("if (localStorage.getItem('vueNodesBannerDismissed') === 'true') return false;"
                             "localStorage.setItem('vueNodesBannerDismissed', 'true'); return true;"):
        driver.refresh()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = driver.execute_script(
            "return !!(window.app && window.app.graph && window.LiteGraph && window.LiteGraph.registered_node_types "
            "&& 'AuthFaceDetectFaces' in window.LiteGraph.registered_node_types)")
        if ready:
            return
        time.sleep(0.5)
    raise AssertionError(f"the ComfyUI page of {host.version} did not finish loading the node definitions")


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_ui_workflow_loads_in_the_page(comfy_host: ComfyHost, browser, path: Path, t1_photo: Path,
                                       hanks_photo: Path, tmp_path: Path) -> None:
    workflow = json.loads(path.read_text())
    # The images and videos the workflows name, so LoadImage/LoadVideo show a valid file as they
    # would for a user.
    for node in workflow["nodes"]:
        if node["type"] == "LoadImage":
            comfy_host.add_input(hanks_photo if "aligned" in path.stem else t1_photo, node["widgets_values"][0])
        if node["type"] == "LoadVideo":
            frames = [cv2.cvtColor(cv2.imread(str(hanks_photo)), cv2.COLOR_BGR2RGB)[:112, :112]] * 2
            comfy_host.add_input(write_clip(tmp_path / "clip.mp4", frames, Fraction(24)), node["widgets_values"][0])
    open_app(browser, comfy_host)
    result = browser.execute_async_script(LOAD_AND_INSPECT, workflow)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{path.stem}-comfyui-{comfy_host.version}.png"
    browser.save_screenshot(str(shot))
    assert "exception" not in result, result.get("exception")
    assert result["count"] == len(workflow["nodes"])
    assert result["missing"] == [], f"missing (red) nodes: {result['missing']}"
    assert result["errors"] == []
    assert result["links"] == len(workflow["links"])
    for node in workflow["nodes"]:
        shown = result["widgets"][str(node["id"])]
        expected = node["widgets_values"]
        assert shown[: len(expected)] == expected or shown == expected[: len(shown)], (
            f"{node['type']} shows widgets {shown}, the workflow holds {expected}")
    assert shot.stat().st_size > 10_000
    shutil.copyfile(shot, ARTIFACTS / f"latest-{path.stem}.png")
