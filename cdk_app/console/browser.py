"""Debian's chromium, headless, driven by selenium through Debian's chromedriver: how the
console's tests, its benchmark and the screenshot script look at the console, in a real browser.

``make setup`` installs both where it can (apt); elsewhere ``headless_chromium`` says what is
missing instead of letting selenium go looking for a browser to download.
"""

from __future__ import annotations

from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


class BrowserMissing(RuntimeError):
    """chromium or its driver is not installed."""


def headless_chromium(width: int = 1400, height: int = 900) -> webdriver.Chrome:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        raise BrowserMissing(
            f"{' and '.join(missing)} missing: run make setup, or apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the sandbox needs user namespaces, which containers often lack
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
