"""
A real Firefox for the web tests: Debian's C{firefox-esr}, started headless
with Marionette on a port it picks itself, driven with Mozilla's own
C{marionette-driver} (Playwright cannot drive a stock Firefox, and no
geckodriver is needed).  Its whole process group is ended on every path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

FIREFOXES = ("firefox-esr", "firefox")
T = TypeVar("T")


def firefoxBinary() -> str | None:
    """The path of an installed Firefox, if any."""
    for name in FIREFOXES:
        path = shutil.which(name)
        if path:
            return path
    return None


FIREFOX = firefoxBinary()
FIREFOX_MARKS = [
    pytest.mark.browser,
    pytest.mark.firefox,
    pytest.mark.subprocess,
    pytest.mark.skipif(
        FIREFOX is None,
        reason="no Firefox binary: apt-get install firefox-esr (.ci/run does)",
    ),
]
FLAGS = ("--headless", "--marionette", "-remote-allow-system-access", "--no-remote")
"""System access lets the tests read the browser console (CSP refusals, page errors)."""
STARTUP = 60.0
"""Seconds Firefox may take to open its Marionette port."""
TIMEOUT = 20.0
"""Seconds a page may take for any one step."""
ENTER = "\ue007"
"""The WebDriver key code of Enter, for C{send_keys}."""
PHONE = (390, 760)
"""A phone-sized window, as the Chromium tests use."""

# Quiet, offline, automation-friendly preferences: no first-run pages, no
# updates or telemetry reaching out, downloads saved without a dialog.
PREFERENCES: dict[str, Any] = {
    "marionette.port": 0,  # any free port; Firefox writes it to MarionetteActivePort
    "app.update.disabledForTesting": True,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.aboutwelcome.enabled": False,
    "browser.warnOnQuit": False,
    "browser.tabs.warnOnClose": False,
    "browser.sessionstore.resume_from_crash": False,
    "browser.safebrowsing.update.enabled": False,
    "browser.search.update": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.server": "",
    "extensions.update.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "services.settings.server": "data:,#remote-settings-dummy/v1",
    "remote.prefs.recommended": True,
    "browser.download.folderList": 2,
    "browser.download.useDownloadDir": True,
    "browser.download.always_ask_before_handling_new_types": False,
    "browser.download.start_downloads_in_tmp_dir": False,
    "browser.download.panel.shown": True,
    "browser.download.alwaysOpenPanel": False,
    "dom.successive_dialog_time_limit": 0,
    "devtools.console.stdout.content": True,  # page errors and CSP reports into firefox.log
}


WAIT_FOR_TEXT = """
const [selector, text, done] = arguments;
const found = () => Array.from(document.querySelectorAll(selector), e => e.textContent)
    .find(t => t.includes(text));
const now = found();
if (now !== undefined) {
    done(now);
} else {
    const observer = new MutationObserver(() => {
        const seen = found();
        if (seen !== undefined) { observer.disconnect(); done(seen); }
    });
    observer.observe(document, {subtree: true, childList: true, characterData: true,
                                attributes: true});
}
"""

CONSOLE_PROBLEMS = """
const [origin] = arguments;
const problems = Services.console.getMessageArray()
    .filter(m => m instanceof Ci.nsIScriptError)
    .filter(m => m.sourceName.startsWith(origin) || m.category.startsWith("CSP")
                 || m.category === "content javascript")
    .map(m => `${m.category}: ${m.errorMessage} (${m.sourceName}:${m.lineNumber})`);
Services.console.reset();
return problems;
"""


def waitUntil(check: Callable[[], T | None], what: str, timeout: float = TIMEOUT) -> T:
    """Return the first true answer of C{check}, failing with C{what} after C{timeout}."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Firefox:
    """One headless Firefox in its own process group, with a Marionette session."""

    def __init__(self, binary: str, home: Path) -> None:
        with warnings.catch_warnings():
            # mozrunner, imported by the driver, uses deprecated distro and telnetlib APIs.
            warnings.simplefilter("ignore", DeprecationWarning)
            from marionette_driver.marionette import Marionette

        self.profile = home / "profile"
        self.downloads = home / "downloads"
        self.profile.mkdir()
        self.downloads.mkdir()
        prefs = dict(PREFERENCES, **{"browser.download.dir": str(self.downloads)})
        (self.profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
        )
        self.log = (home / "firefox.log").open("wb")
        env = dict(os.environ, MOZ_HEADLESS="1", MOZ_CRASHREPORTER_DISABLE="1")
        env["MOZ_HEADLESS_WIDTH"], env["MOZ_HEADLESS_HEIGHT"] = map(str, PHONE)
        self.process = subprocess.Popen(
            [binary, *FLAGS, "--profile", str(self.profile)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its content processes share the group we kill
        )
        self.client: Any = None
        try:
            port = waitUntil(self._activePort, "Firefox's Marionette port", STARTUP)
            self.client = Marionette(host="127.0.0.1", port=port, socket_timeout=TIMEOUT * 3)
            # The TLS tests' throw-away CA is not in this profile's trust store.
            self.client.start_session({"acceptInsecureCerts": True})
            self.client.timeout.page_load = TIMEOUT
            self.client.timeout.script = TIMEOUT
        except BaseException:
            self.quit()
            raise

    def _activePort(self) -> int | None:
        """The port Marionette listens on, once Firefox has written it."""
        if self.process.poll() is not None:
            raise AssertionError(
                f"firefox exited with {self.process.returncode} before Marionette started"
            )
        try:
            return int((self.profile / "MarionetteActivePort").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def quit(self) -> None:
        """Ask Firefox to quit, then end whatever is left of its process group."""
        if self.client is not None:
            # Already gone, or stuck: the signals below settle it either way.
            with contextlib.suppress(Exception):
                self.client._send_message("Marionette:Quit", {"flags": ["eForceQuit"]})
            with contextlib.suppress(Exception):
                self.client.delete_session(send_request=False)
            self.client = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        # Content processes can outlive the parent: end the whole group.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self._groupAlive():
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(AssertionError):
                waitUntil(lambda: not self._groupAlive(), "Firefox's processes to end", 5)
        self.process.wait()
        self.log.close()

    def _groupAlive(self) -> bool:
        """Whether any process of Firefox's group is left (reaping Firefox itself)."""
        self.process.poll()
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def open(self, url: str) -> None:
        """Load C{url} in the one tab, at the phone-sized window."""
        self.client.navigate(url)

    def run(self, script: str, *args: Any) -> Any:
        """Run C{script} in the page (its arguments as C{arguments[i]}); return its result."""
        return self.client.execute_script(script, script_args=list(args), new_sandbox=False)

    def find(self, selector: str) -> Any:
        """The first element matching the CSS C{selector}, waiting for it to exist."""
        from marionette_driver.by import By

        return waitUntil(
            lambda: self.client.find_elements(By.CSS_SELECTOR, selector)[:1],
            f"an element matching {selector!r}",
        )[0]

    def texts(self, selector: str) -> list[str]:
        """The text content of every element matching C{selector}."""
        return list(
            self.run(
                "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent);",
                selector,
            )
        )

    def waitForText(self, selector: str, text: str, timeout: float = TIMEOUT) -> str:
        """Wait until an element matching C{selector} contains C{text}; return its text.

        The page itself watches for it (a C{MutationObserver}), so nothing polls.
        """
        from marionette_driver.errors import ScriptTimeoutException

        try:
            return str(
                self.client.execute_async_script(
                    WAIT_FOR_TEXT,
                    script_args=[selector, text],
                    new_sandbox=False,
                    script_timeout=int(timeout * 1000),
                )
            )
        except ScriptTimeoutException:
            shown = self.texts(selector)
            raise AssertionError(
                f"no {selector!r} shows {text!r} in {timeout}s: {shown}"
            ) from None

    def consoleProblems(self, origin: str) -> list[str]:
        """Every error or warning Firefox logged for C{origin}'s pages since last asked.

        CSP refusals and uncaught page errors count wherever they came from;
        Firefox's own chrome noise does not.  The console is cleared after.
        """
        with self.client.using_context("chrome"):
            found = self.client.execute_script(CONSOLE_PROBLEMS, script_args=[origin])
        return [str(line) for line in found]

    def screenshot(self, path: Path) -> None:
        """Save a PNG of the whole page."""
        path.write_bytes(self.client.screenshot(format="binary", full=True))
