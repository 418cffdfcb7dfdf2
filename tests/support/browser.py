"""A real headless Chromium for page tests (Debian's `chromium` and `chromium-driver`, driven by Selenium), static
pages on another origin, and where screenshots go.

`make test` installs the browser (`make system-deps`); a machine without it fails the page tests with the command
that installs it rather than skipping them, so a green run always means the page was really tested.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO_ROOT

ARTIFACTS = Path(os.environ.get("SIGNALS_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def _executable(names: tuple[str, ...]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


@contextmanager
def chromium(width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A headless Chromium (Selenium WebDriver) that keeps the page's console messages."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = _executable(CHROMIUM_CANDIDATES), _executable(("chromedriver",))
    if browser is None or driver_path is None:
        pytest.fail(
            "Chromium and its driver are missing: run `make system-deps` (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--disable-extensions", "--no-first-run"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The page's console messages at level SEVERE since the last call."""
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def screenshot(driver: Any, name: str, *, full_page: bool = False) -> Path:
    """Save the window (or the whole page, by growing the window to it) under ARTIFACTS; the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if full_page:
        size = driver.get_window_size()
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(size["width"], max(height, size["height"]))
        driver.save_screenshot(str(path))
        driver.set_window_size(size["width"], size["height"])
    else:
        driver.save_screenshot(str(path))
    return path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass


@contextmanager
def static_origin(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 at a free port (another origin than the server's); its origin URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
