"""A small HTTP client for the Jarvis Lab API: timeouts, retries with backoff, one clear error when it gives up."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import requests

from benlab.common import BenLabError, run_main


class LabRefused(BenLabError):
    """The lab answered 4xx: the request itself is wrong (out of bounds, unknown phase), not the lab."""


class LabClient:
    """POSTs JSON to the lab. Connection errors, timeouts and 5xx are retried with exponential backoff; a 4xx is
    the caller's mistake and is reported at once. Safe to share between threads (one session per thread)."""

    def __init__(self, url: str, timeout: float = 60.0, retries: int = 4, backoff: float = 0.25):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def is_up(self) -> bool:
        try:
            return self._session().get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def health(self) -> dict:
        """The lab's /health answer ({} when it is not JSON)."""
        try:
            return self._session().get(f"{self.url}/health", timeout=self.timeout).json()
        except (requests.RequestException, ValueError):
            return {}

    def is_original_lab(self) -> bool:
        """The original Jarvis Lab API answers /health without the phases this repository's lab lists."""
        return "phases" not in self.health()

    def post(self, path: str, body: dict) -> dict:
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._session().post(f"{self.url}{path}", json=body, timeout=self.timeout)
            except requests.RequestException as error:
                problem = type(error).__name__
                continue
            if response.status_code >= 500:
                problem = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise LabRefused(f"the lab refused POST {path} {body}: HTTP {response.status_code} {response.text[:300]}")
            try:
                return response.json()
            except ValueError:
                problem = "a response that is not JSON"
        raise BenLabError(
            f"the lab at {self.url} did not answer POST {path} after {self.retries + 1} tries ({problem}); "
            "check that it is running (python jarvis_api.py) or pass --start-lab"
        )


def process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


def main(argv: list[str] | None = None) -> int:
    from benlab.lab_server import wait_healthy

    parser = argparse.ArgumentParser(
        prog="python -m benlab.lab_client",
        description="Check that a Jarvis Lab API answers on /health: exit 0 when it does, 1 when it does not.",
    )
    parser.add_argument("url", help="the lab, e.g. http://127.0.0.1:8000")
    parser.add_argument("--wait", type=float, default=0.0, help="keep asking for this many seconds (default: ask once)")
    parser.add_argument("--pid", type=int, default=None, help="stop waiting as soon as this process (the lab) has exited")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    running = (lambda: process_running(args.pid)) if args.pid else (lambda: True)
    if not wait_healthy(url, args.wait, running):
        print(f"no lab answers at {url}/health", file=sys.stderr)
        return 1
    print(f"lab up at {url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
