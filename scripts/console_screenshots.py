"""``make screenshots``: the pictures of the console (README, docs/), made from real runs.

Starts the dev server (a data folder of its own, the specs in scripts/console_demo/, the console
on a free port), starts three runs of catch_the_fish (one that fails after a retry, one that
succeeds, one slow enough to be caught running), and photographs the running run, the failed
run with its job panel open, and the runs page in headless chromium, into docs/images/.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cdk_app.console.browser import headless_chromium  # noqa: E402

DEMO = REPO / "scripts" / "console_demo"
SPEC = DEMO / "catch_the_fish.yaml"
IMAGES = REPO / "docs" / "images"


def cli(uri: str, *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cdk_app", *argv, "--mongo-uri", uri],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr}")
    return done.stdout.strip()


def wait_for(condition: object, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.1)


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        errors = Path(folder) / "dev.err"
        with errors.open("w") as stderr:
            dev = subprocess.Popen(
                [sys.executable, "-m", "cdk_app", "dev", "--data", str(Path(folder) / "data"),
                 "--workflows", str(DEMO), "--console-port", "0", "--allow-actions"],
                cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True,
                env={k: v for k, v in os.environ.items() if k != "MONGODB_URI"},
            )  # fmt: skip
        try:
            assert dev.stdout is not None
            ready, _, _ = select.select([dev.stdout], [], [], 60)
            uri = dev.stdout.readline().strip() if ready else ""
            wait_for(lambda: "workflows in" in errors.read_text(), "the dev server")
            found = re.search(r"console on (http://\S+/)", errors.read_text())
            if not uri or found is None:
                raise SystemExit(f"the dev server did not start: {errors.read_text()}")
            url = found.group(1)
            failed = cli(uri, "start", str(SPEC), "--input", json.dumps({"pace": 0.3, "fail": "catch_fish"}))
            cli(uri, "start", str(SPEC), "--input", json.dumps({"pace": 0.1}))
            cli(uri, "status", failed, "--wait", "60")
            running = cli(uri, "start", str(SPEC), "--input", json.dumps({"pace": 2.5, "customer": "demo"}))
            browser = headless_chromium(1600, 900)
            try:
                browser.get(f"{url}run?id={running}")
                wait_for(
                    lambda: browser.find_elements(
                        "css selector", 'g.job.state-dispatched[data-job="drink_beer"]'
                    ),
                    "the running run to reach drink_beer",
                )
                time.sleep(1)
                browser.save_screenshot(str(IMAGES / "console-running.png"))
                browser.get(f"{url}run?id={failed}")
                wait_for(
                    lambda: browser.find_elements("css selector", "g.job.state-failed"), "the failed job"
                )
                browser.find_element("css selector", 'g.job[data-job="catch_fish"]').click()
                time.sleep(0.5)
                browser.save_screenshot(str(IMAGES / "console-failed.png"))
                browser.get(url)
                wait_for(lambda: len(browser.find_elements("css selector", "tr[data-run]")) >= 3, "the runs")
                time.sleep(0.5)
                browser.save_screenshot(str(IMAGES / "console-runs.png"))
            finally:
                browser.quit()
            cli(uri, "status", running, "--wait", "60")
        finally:
            dev.send_signal(signal.SIGTERM)
            dev.wait(timeout=30)
    for name in ("console-running", "console-failed", "console-runs"):
        print(IMAGES / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
