"""Debian's headless Chromium for the tests that render a page (report.html, the pages of `cnnkit serve`),
driven by playwright; never `playwright install` (it downloads browsers)."""
import shutil

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def find_chromium() -> str:
    """The chromium executable, or skip saying why there is none."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("chromium is not installed, and `make test` could not install it (it runs "
                    "`apt-get install chromium`, which needs root or sudo and the Debian mirror)")
    return path


def launch(p, chromium: str, profile: str, width: int = 1280, height: int = 900):
    """A persistent headless context (playwright's `p`) in the folder `profile`."""
    return p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                args=CHROMIUM_ARGS, viewport={"width": width, "height": height})


def watch(page, problems: list) -> None:
    """Collect the page's console errors, uncaught errors and failed requests into `problems`."""
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
