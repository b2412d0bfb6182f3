"""The Dagster UI of a real `video-pipelines dev`, driven in Debian's Chromium: a person goes from an execution id
to its run page (the status document's `uiUrl`, or the runs list filtered by the id), plays its video from there,
and launches the job's default plan from the Launchpad.

The docs' screenshots are saved at docs/images/ (committed; the UI tour shows them); the others, and the last page
on a failure, in test-artifacts/screenshots/ (gitignored; CI keeps them as artifacts)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from video_pipelines.doors import client
from video_pipelines.executions.records import TRACEPARENT_TAG

from ..conftest import free_port
from .test_dev import start_dev, stop_dev, wait_serving

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
DOC_IMAGES = REPO / "docs" / "images"
CHROMIUM, CHROMEDRIVER = "chromium", "chromedriver"
# The location name video_pipelines.deployment.instance.write_workspace gives the package in dev's workspace.
LOCATION = "video_pipelines"
# A React app over GraphQL: pages render well after the document loads, slower on a busy CI machine.
UI_WAIT = 60
PLAN = {
    "jobs": [
        {"id": "clip", "type": "generateVideo", "params": {"prompt": "a browser finds me", "duration": 2}},
    ]
}


@dataclass
class Dev:
    ui: str
    api: str
    home: Path


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dev]:
    """`video-pipelines dev` on free ports with its own DAGSTER_HOME, which this process uses too."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_HOME", "VIDEO_PIPELINES_"))}
    env["DAGSTER_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for name in [name for name in os.environ if name.startswith("VIDEO_PIPELINES_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    port, api_port = free_port(), free_port()
    log_path = tmp_path / "dev.log"
    command = ["video-pipelines", "dev", "--port", str(port), "--api-port", str(api_port)]
    process = start_dev(command, tmp_path, env, log_path)
    ui, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}"
    try:
        wait_serving(process, ui, api, log_path)
        yield Dev(ui, api, home)
    finally:
        stop_dev(process)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium through chromedriver, both from Debian's packages."""
    chromium, chromedriver = shutil.which(CHROMIUM), shutil.which(CHROMEDRIVER)
    if chromium is None or chromedriver is None:
        pytest.fail("install chromium and chromium-driver as .ci/run does")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # Offline machines refuse Chromium's own connections (updates, sync, QUIC): without these it stalls.
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1600,1000",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(UI_WAIT)
    try:
        yield driver
    finally:
        # The page as the test left it: on a failure, what the person would have seen.
        screenshot(driver, "last-page")
        (SCREENSHOTS / "last-page.html").write_text(driver.page_source)
        driver.quit()


def visible(driver: WebDriver, by: str, selector: str) -> WebElement:
    element: WebElement = WebDriverWait(driver, UI_WAIT).until(ec.visibility_of_element_located((by, selector)))
    return element


def click(driver: WebDriver, by: str, selector: str) -> None:
    """Click the element once it can be clicked; React may re-render it in between (the runs list refreshes)."""

    def clicked(driver: WebDriver) -> bool:
        element = ec.element_to_be_clickable((by, selector))(driver)
        if not element:
            return False
        element.click()
        return True

    WebDriverWait(driver, UI_WAIT, ignored_exceptions=[StaleElementReferenceException]).until(clicked)


def screenshot(driver: WebDriver, name: str, folder: Path = SCREENSHOTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / f"{name}.png"))


def ui_tags(ui: str, run_id: str) -> dict[str, str]:
    """The run's tags as the UI gets them (its GraphQL query)."""
    query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }"
    answer = httpx.post(f"{ui}/graphql", json={"query": query, "variables": {"id": run_id}}, timeout=30)
    return {tag["key"]: tag["value"] for tag in answer.json()["data"]["runOrError"]["tags"]}


def open_ui(driver: WebDriver, ui: str) -> None:
    # Dismissed as the UI itself records it: otherwise its "Join the Dagster community" dialog covers the page.
    driver.get(f"{ui}/server_info")
    driver.execute_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")


def test_a_person_goes_from_an_execution_id_to_its_video_and_launches_the_default_plan(
    browser: WebDriver, dev: Dev, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDEO_PIPELINES_UI_URL", dev.ui)  # as dev sets it for its children
    with client.deployment(create=False) as deployment:
        execution_id = client.submit(PLAN, target=deployment)
        other_id = client.submit({"jobs": [{**PLAN["jobs"][0], "id": "other"}]}, target=deployment)
        done = client.wait(execution_id, timeout=180, target=deployment)
        assert done["status"] == "completed", done
        assert client.wait(other_id, timeout=180, target=deployment)["status"] == "completed"
        open_ui(browser, dev.ui)

        # One command: `status` links the run's page.
        run_page = client.status(execution_id, target=deployment)["uiUrl"]
        assert run_page == f"{dev.ui}/runs/{done['runId']}"

        # Or from the id alone: the runs list filtered by it shows its run alone, one click away.
        browser.get(f"{dev.ui}/runs?{quote('q[]')}={quote(f'tag:video/execution_id={execution_id}')}")
        run_link = f"/runs/{done['runId']}"
        WebDriverWait(browser, UI_WAIT, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda driver: (
                {link.get_attribute("href") for link in driver.find_elements(By.CSS_SELECTOR, "a[href^='/runs/']")}
                == {dev.ui + run_link}
            )
        )
        visible(browser, By.XPATH, f"//*[contains(text(), '{execution_id}')]")
        screenshot(browser, "runs-by-execution", DOC_IMAGES)
        # The UI gets the execution's tag but not the internal traceparent, which the run has.
        run = deployment.instance.get_run_by_id(done["runId"])
        assert run is not None and TRACEPARENT_TAG in run.tags
        tags = ui_tags(dev.ui, done["runId"])
        assert TRACEPARENT_TAG not in tags and tags["video/execution_id"] == execution_id, tags
        click(browser, By.CSS_SELECTOR, f"a[href='{run_link}']")
        WebDriverWait(browser, UI_WAIT).until(ec.url_to_be(run_page))

        # The run page names the execution; its materialization links the node's video (a second click).
        visible(browser, By.XPATH, f"//*[contains(text(), '{execution_id}')]")
        visible(browser, By.XPATH, "//input[@placeholder='Filter…']").send_keys("type:ASSET_MATERIALIZATION")
        # The materialization's first entry is the video's link, shown on the page: the second click.
        video_link = visible(browser, By.CSS_SELECTOR, "a[href$='.mp4']")
        screenshot(browser, "run-page", DOC_IMAGES)
        href = video_link.get_attribute("href")
        assert href is not None and href == done["result"]["url"] and href.startswith(f"{dev.api}/artifacts/videos/")

        # The video plays in the browser (in a new tab if the link opens one): its time advances.
        video_link.click()
        WebDriverWait(browser, UI_WAIT).until(
            lambda driver: len(driver.window_handles) == 2 or driver.current_url == href
        )
        browser.switch_to.window(browser.window_handles[-1])
        WebDriverWait(browser, UI_WAIT).until(
            lambda driver: driver.execute_script(
                "const v = document.querySelector('video'); if (!v) return false;"
                "v.muted = true; v.play().catch(() => {}); return v.error === null && v.currentTime > 0;"
            )
        )

        # The asset catalog: every operation's videos, partitioned by execution and node.
        if len(browser.window_handles) == 2:
            browser.close()
            browser.switch_to.window(browser.window_handles[0])
        browser.get(f"{dev.ui}/assets")
        visible(browser, By.XPATH, "//a[contains(., 'generate_video')]")
        screenshot(browser, "asset-catalog", DOC_IMAGES)

        # The Launchpad opens with a runnable plan; Launch Run goes to the new run's page.
        browser.get(f"{dev.ui}/locations/{LOCATION}/jobs/execute_plan/playground")
        # Enabled once the webserver has validated the config in the editor.
        launch = "//button[.//*[normalize-space()='Launch Run']]"
        WebDriverWait(browser, UI_WAIT).until(ec.element_to_be_clickable((By.XPATH, launch)))
        screenshot(browser, "launchpad", DOC_IMAGES)
        click(browser, By.XPATH, launch)
        WebDriverWait(browser, UI_WAIT).until(
            lambda driver: driver.current_url.startswith(f"{dev.ui}/runs/") and driver.current_url != run_page
        )
        launched_id = browser.current_url.removeprefix(f"{dev.ui}/runs/").split("?")[0]

        deadline = time.monotonic() + 120
        while (run := deployment.instance.get_run_by_id(launched_id)) is None or not run.is_finished:
            assert time.monotonic() < deadline, f"run {launched_id} did not end in 120 s: {run and run.status}"
            time.sleep(1)
        assert run.job_name == "execute_plan"
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
        browser.refresh()
        visible(browser, By.XPATH, "//*[normalize-space()='Success']")
        screenshot(browser, "launched-run")
