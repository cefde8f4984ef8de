"""The explorer in a real browser (Debian's headless Chromium driven by Selenium) against the running
system: search with images, the like / more-like-my-likes loop checked against the Recommend RPC,
an object with its tag suggestions and explanations, curator feedback, the no-result and
backend-down states, and a phone-width layout. Screenshots of the main views are saved under
test-output/explorer/."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.conftest import DEMO_OBJECT, System
from tests.servers import ROOT, ServiceProcess, free_port, start_service, wait_until_answering
from vitrine.v1 import search_pb2, search_pb2_grpc

SCREENSHOTS = ROOT / "test-output" / "explorer"
WAIT_S = 90  # answers come from real models on 2 CPU cores


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail("Debian's chromium and chromium-driver are needed (make tools installs them)")
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    binary, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield chrome
    finally:
        chrome.quit()


def wait(browser: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    try:
        return WebDriverWait(browser, WAIT_S, poll_frequency=0.2).until(condition)
    except TimeoutException:
        browser.save_screenshot(str(SCREENSHOTS / "failure.png"))
        status = browser.find_elements(By.ID, "status")
        raise AssertionError(
            f"timed out waiting for {what} at {browser.current_url} "
            f"(status: {status[0].text if status else '?'!r}); screenshot in {SCREENSHOTS / 'failure.png'}"
        ) from None


def results_state(browser: WebDriver, source: str = "search") -> str:
    results = browser.find_element(By.ID, "results")
    if results.get_attribute("data-source") != source:
        return ""
    state = results.get_attribute("data-state") or ""
    return state if state in ("ok", "empty", "error") else ""


def search(browser: WebDriver, url: str, query: str, has_image: bool = False, year_from: str = "") -> str:
    """Open a fresh session, run a search through the form, return the final results state."""
    browser.get(url)
    browser.execute_script("sessionStorage.clear()")
    browser.get(url)
    box = wait(browser, lambda b: b.find_element(By.ID, "query"), "the query box")
    if has_image != browser.find_element(By.ID, "filter-has-image").is_selected():
        browser.find_element(By.ID, "filter-has-image").click()
    if year_from:
        browser.find_element(By.ID, "filter-year-from").send_keys(year_from)
    box.clear()
    box.send_keys(query, Keys.ENTER)
    return wait(browser, lambda b: results_state(b, "search"), f"results for {query!r}")


def tiles(browser: WebDriver, within: str = "#results") -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, f"{within} .result")


def ids(elements: list[WebElement]) -> list[str]:
    return [e.get_attribute("data-id") or "" for e in elements]


def test_search_shows_results_with_images(explorer: ServiceProcess, browser: WebDriver) -> None:
    assert search(browser, explorer.url, "fresco wall painting", has_image=True) == "ok"
    found = tiles(browser)
    assert found
    images = browser.find_elements(By.CSS_SELECTOR, "#results .result img.thumb")
    assert len(images) == len(found), "every result of a has-image search shows its image"
    # Thumbnails load lazily: the first row is on screen, so those must have arrived.
    first_row = images[:3]
    loaded = "return arguments[0].complete && arguments[0].naturalWidth > 0"
    wait(browser, lambda b: all(b.execute_script(loaded, i) for i in first_row), "the first row's images")
    assert all(i.get_attribute("alt") for i in images), "alt text from the titles"
    first = found[0]
    assert first.find_element(By.CSS_SELECTOR, ".title").text
    assert first.find_elements(By.CSS_SELECTOR, ".signals .signal[data-signal]"), "which signals matched"
    browser.save_screenshot(str(SCREENSHOTS / "search.png"))


def test_likes_fill_the_next_page_from_recommendation(
    explorer: ServiceProcess, browser: WebDriver, system: System
) -> None:
    assert search(browser, explorer.url, "painting", has_image=True) == "ok"
    shown = ids(tiles(browser))
    assert len(shown) >= 4
    liked = shown[:3]
    for tile in tiles(browser)[:3]:
        tile.find_element(By.CSS_SELECTOR, "button.like").click()
    assert [
        t.find_element(By.CSS_SELECTOR, "button.like").get_attribute("aria-pressed") for t in tiles(browser)[:3]
    ] == ["true"] * 3
    browser.find_element(By.ID, "more-like-likes").click()
    wait(browser, lambda b: results_state(b, "recommend"), "recommendations")
    first_page = ids(tiles(browser))
    assert first_page and not set(first_page) & set(shown), "never an object already shown"
    # The page is exactly what the Recommend RPC answers for these likes and everything shown.
    stub = search_pb2_grpc.SearchServiceStub(grpc.insecure_channel(system.search.address))
    expected = stub.Recommend(search_pb2.RecommendRequest(liked_ids=liked, seen_ids=shown, k=12), timeout=60)
    assert first_page == [h.object.id for h in expected.hits]
    assert liked[0] in browser.current_url, "the likes live in the URL"
    browser.save_screenshot(str(SCREENSHOTS / "recommend.png"))

    # Other likes, other recommendations: like two of the recommended objects, drop the old likes.
    browser.find_element(By.ID, "clear-likes").click()
    for tile in tiles(browser)[:2]:
        tile.find_element(By.CSS_SELECTOR, "button.like").click()
    new_likes = first_page[:2]
    browser.find_element(By.ID, "more-like-likes").click()
    wait(browser, lambda b: results_state(b, "recommend") and ids(tiles(b)) != first_page, "new recommendations")
    second_page = ids(tiles(browser))
    assert second_page and not set(second_page) & (set(shown) | set(first_page))
    expected = stub.Recommend(
        search_pb2.RecommendRequest(liked_ids=new_likes, seen_ids=[*shown, *first_page], k=12), timeout=60
    )
    assert second_page == [h.object.id for h in expected.hits]


def test_an_object_shows_tag_suggestions_with_explanations(explorer: ServiceProcess, browser: WebDriver) -> None:
    assert search(browser, explorer.url, "two-masted sailing ship seen from the shore") == "ok"
    tile = next((t for t in tiles(browser) if t.get_attribute("data-id") == DEMO_OBJECT), None)
    assert tile is not None, f"{DEMO_OBJECT} among the results"
    tile.find_element(By.CSS_SELECTOR, ".open").click()
    panel = wait(
        browser,
        lambda b: b.find_element(By.ID, "object") if b.find_element(By.ID, "object").is_displayed() else None,
        "the object panel",
    )
    assert panel.get_attribute("data-id") == DEMO_OBJECT
    suggestions = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#object .suggestion"), "tag suggestions")
    kinds = {s.find_element(By.CSS_SELECTOR, ".kind").text.strip() for s in suggestions}
    assert kinds <= {"MIMIC", "RECOMMEND"} and kinds
    first = suggestions[0]
    details = first.find_element(By.CSS_SELECTOR, "details.explanation")
    details.find_element(By.TAG_NAME, "summary").click()
    assert details.get_attribute("open") is not None
    evidence = details.text.lower()
    assert any(component in evidence for component in ("knn", "omikuji", "linear", "mlp", "semantic_text"))
    first.find_element(By.CSS_SELECTOR, "button.accept").click()
    wait(browser, lambda b: "accepted" in first.find_element(By.CSS_SELECTOR, ".feedback-result").text.lower(), "ok")
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#object .similar .result"), "similar objects")
    assert f"obj={DEMO_OBJECT}" in browser.current_url
    browser.save_screenshot(str(SCREENSHOTS / "object.png"))
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait(browser, lambda b: not b.find_element(By.ID, "object").is_displayed(), "the panel to close")


def test_no_results_says_so_and_offers_alternatives(explorer: ServiceProcess, browser: WebDriver) -> None:
    assert search(browser, explorer.url, "ship", year_from="3000") == "empty"
    empty = browser.find_element(By.ID, "empty")
    assert empty.is_displayed() and "ship" in empty.text
    alternatives = empty.find_elements(By.CSS_SELECTOR, "a.alternative")
    assert alternatives
    browser.save_screenshot(str(SCREENSHOTS / "empty.png"))
    without_filters = next(a for a in alternatives if "filter" in a.text.lower())
    without_filters.click()
    wait(browser, lambda b: results_state(b, "search") == "ok" and tiles(b), "results without the filters")


def test_phone_width_has_no_horizontal_scroll(explorer: ServiceProcess, browser: WebDriver) -> None:
    browser.set_window_size(375, 800)
    try:
        assert search(browser, explorer.url, "portrait", has_image=True) == "ok"
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 375, f"the page is {width} px wide at a 375 px phone width"
        browser.save_screenshot(str(SCREENSHOTS / "phone.png"))
    finally:
        browser.set_window_size(1280, 1000)


def test_backend_down_shows_a_message_not_a_blank_page(browser: WebDriver) -> None:
    dead = f"127.0.0.1:{free_port()}"
    service = start_service(
        "explorer", {"VITRINE_EXPLORER_SEARCH_ADDRESS": dead, "VITRINE_EXPLORER_TAGGER_ADDRESS": ""}
    )
    try:
        wait_until_answering(service)
        assert search(browser, service.url, "ship") == "error"
        error = browser.find_element(By.ID, "error")
        assert error.is_displayed() and "unavailable" in error.text.lower()
        assert browser.find_element(By.ID, "search-form").is_displayed()
        browser.save_screenshot(str(SCREENSHOTS / "backend-down.png"))
    finally:
        service.stop()
