"""The translation page (``GET /``) in a real browser: Debian's chromium, driven by Selenium.

Skips when chromium, chromedriver or selenium is absent (.ci/run installs them).
The screenshot goes to $SEQ2SEQ_SCREENSHOT when set (the README's picture).
"""

import os
import shutil
from pathlib import Path

import pytest

from seq2seq.translate import Translator

from .test_serve import start_server, stop_server

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver"
    ),
]


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1100,900",
                 f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_the_page_translates_and_draws_the_attention(toy_checkpoint, tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    process, url = start_server(toy_checkpoint, tmp_path / "server.log", "--max-lines", "5")
    try:
        browser.get(url + "/")
        lines = ["a b c d", "e f g h i j"]
        browser.find_element(By.ID, "text").send_keys("\n".join(lines))
        browser.find_element(By.ID, "translate").click()
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#results li")) == 2)
        shown = [
            li.text.split("\n")[0] for li in browser.find_elements(By.CSS_SELECTOR, "#results li")
        ]
        translator = Translator.from_checkpoint(toy_checkpoint, "cpu")
        assert shown == translator.translate(lines, beam=5)
        browser.find_elements(By.CSS_SELECTOR, "#results li")[1].click()
        cells = browser.find_elements(By.CSS_SELECTOR, "#heatmap td.cell")
        best = translator.translate_detailed(lines[1:], beam=5)[0]
        assert len(cells) == (len(best.candidates[0].tokens) + 1) * len(best.source_tokens)
        assert "<-" in cells[0].get_attribute("title")  # hover: the pair and its weight
        if os.environ.get("SEQ2SEQ_SCREENSHOT"):
            browser.save_screenshot(os.environ["SEQ2SEQ_SCREENSHOT"])
        browser.find_element(By.ID, "text").send_keys("\n" + "\n".join(["a"] * 6))  # 8 > 5 lines
        browser.find_element(By.ID, "translate").click()
        wait.until(until.text_to_be_present_in_element((By.ID, "error"), "413"))
        assert "at most 5 per request" in browser.find_element(By.ID, "error").text
    finally:
        assert stop_server(process) == 0, Path(tmp_path / "server.log").read_text()
