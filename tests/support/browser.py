"""A real headless Chromium for browser tests: Debian's ``chromium`` driven through its
``chromedriver`` by Selenium.

Nothing is downloaded: the browser and the driver are the system's (``apt-get install
chromium chromium-driver``), given to Selenium by path, so Selenium Manager never runs. Every
URL the browser asks for and every response header it gets is kept (Chrome's performance
log), for the scans of what went over the wire. Screenshots go to ``test-artifacts/console/``
at the top of the repository (not committed): ``CALLER_MEMORY_ARTIFACTS`` moves them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ARTIFACTS", "Browser", "Exchange", "browser_missing"]

ARTIFACTS = Path(
    os.environ.get("CALLER_MEMORY_ARTIFACTS")
    or Path(__file__).resolve().parents[2] / "test-artifacts"
)
"""Where browser tests leave their screenshots (``<this>/console/``)."""

_CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def _find(names: tuple[str, ...]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


def browser_missing() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if _find(_CHROMIUM) is None:
        return "no chromium (apt-get install chromium chromium-driver)"
    if _find(("chromedriver",)) is None:
        return "no chromedriver (apt-get install chromium-driver)"
    return None


@dataclass
class Exchange:
    """What went over the wire: every URL the browser asked for, every response header."""

    urls: list[str] = field(default_factory=list)
    headers: list[tuple[str, str, str]] = field(default_factory=list)
    """``(url, header, value)``."""


class Browser:
    """Headless Chromium, with its own profile, download folder and screenshots.

    Args:
        workdir: Its profile and downloads go here.
        shots: Screenshots go here.
    """

    def __init__(self, workdir: Path, shots: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.downloads = workdir / "downloads"
        self.downloads.mkdir(parents=True, exist_ok=True)
        self.shots = shots
        self.shots.mkdir(parents=True, exist_ok=True)
        self.exchange = Exchange()
        options = webdriver.ChromeOptions()
        options.binary_location = _find(_CHROMIUM) or ""
        for argument in (
            "--headless=new",
            "--no-sandbox",  # as root, in a container
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,900",
            f"--user-data-dir={workdir / 'profile'}",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--metrics-recording-only",
            "--password-store=basic",
        ):
            options.add_argument(argument)
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(self.downloads),
                "download.prompt_for_download": False,
                "credentials_enable_service": False,
                "profile.password_manager_enabled": False,
            },
        )
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        self._service = Service(executable_path=_find(("chromedriver",)) or "")
        self.driver = webdriver.Chrome(options=options, service=self._service)
        self.driver.set_page_load_timeout(60)
        self.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(self.downloads)},
        )

    @property
    def pids(self) -> list[int]:
        """The driver's process id (it starts and stops the browser)."""
        process = self._service.process
        return [process.pid] if process is not None else []

    def open(self, url: str) -> None:
        """Load a page."""
        self.driver.get(url)
        self.record()

    def text(self) -> str:
        """The page's visible text."""
        body: str = self.driver.find_element("tag name", "body").text
        return body

    def fill(self, selector: str, value: str) -> None:
        """Type into a field (cleared first)."""
        element = self.driver.find_element("css selector", selector)
        element.clear()
        element.send_keys(value)

    def click(self, selector: str) -> None:
        """Click something that does not load another page (a download)."""
        self.driver.find_element("css selector", selector).click()

    def submit(self, selector: str) -> None:
        """Click a button and wait for the next page."""
        old = self.driver.find_element("tag name", "html")
        self.driver.find_element("css selector", selector).click()
        self.wait(lambda: _stale(old), "the next page")
        self.wait(
            lambda: self.driver.execute_script("return document.readyState") == "complete",
            "the page to load",
        )
        self.record()

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
        """Poll ``check`` until it returns something true."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"still waiting after {timeout:g} s for {what}")
            time.sleep(0.05)

    def screenshot(self, name: str, *, full_page: bool = False) -> Path:
        """Save a PNG of the page (``full_page``: its whole height)."""
        path = self.shots / f"{name}.png"
        if not full_page:
            self.driver.save_screenshot(str(path))
            return path
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        metrics = {
            "width": 1280,
            "height": min(int(height), 6000),
            "deviceScaleFactor": 1,
            "mobile": False,
        }
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        try:
            self.driver.save_screenshot(str(path))
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return path

    def downloaded(self, timeout: float = 30.0) -> Path:
        """The file the last download left (once complete)."""

        def done() -> Path | None:
            files = [p for p in self.downloads.iterdir() if not p.name.endswith(".crdownload")]
            return files[0] if files else None

        found: Path = self.wait(done, "the download")
        return found

    def record(self) -> Exchange:
        """Move what the browser logged since the last call into :attr:`exchange`."""
        for entry in self.driver.get_log("performance"):  # type: ignore[no-untyped-call]
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message.get("method") == "Network.requestWillBeSent":
                self.exchange.urls.append(params["request"]["url"])
            elif message.get("method") == "Network.responseReceived":
                response = params["response"]
                for name, value in response.get("headers", {}).items():
                    self.exchange.headers.append((response["url"], name, str(value)))
        return self.exchange

    def close(self) -> None:
        """Quit the browser and stop its driver (by the pid Selenium started)."""
        try:
            self.driver.quit()
        finally:
            self._service.stop()


def _stale(element: Any) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.tag_name  # noqa: B018
    except StaleElementReferenceException:
        return True
    except WebDriverException as e:
        # Chromium's other answer for a node of a page that has been replaced, depending on
        # when in the navigation it is asked.
        if "does not belong to the document" in str(e):
            return True
        raise
    return False
