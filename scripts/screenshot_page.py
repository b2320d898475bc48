"""The README's picture of the translation page: a running server, headless chromium, two lines.

    seq2seq serve --model exports/de_en_1h --port 8765 &
    python scripts/screenshot_page.py [--url http://127.0.0.1:8765/] [--output docs/img/translation_page.png]

Needs selenium and Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver).
"""

from __future__ import annotations

import argparse
import tempfile

LINES = ["Ein Mann mit einem roten Helm fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8765/")
    parser.add_argument("--output", default="docs/img/translation_page.png")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--window-size=1000,820", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(args.url)
        driver.find_element(By.ID, "text").send_keys("\n".join(LINES))
        n_best = driver.find_element(By.ID, "nbest")
        n_best.clear()
        n_best.send_keys("2")
        driver.find_element(By.ID, "translate").click()
        WebDriverWait(driver, 30).until(
            lambda b: len(b.find_elements(By.CSS_SELECTOR, "#results li")) == len(LINES)
        )
        driver.save_screenshot(args.output)
        print(args.output)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
