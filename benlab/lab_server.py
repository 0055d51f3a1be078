"""Serving the lab: the `jarvis_api.py` command, and a local lab on a free port for the pipeline and tests."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from benlab.common import BenLabError, run_main

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
REPO_ROOT = Path(__file__).resolve().parent.parent


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind((DEFAULT_HOST, 0))
        return s.getsockname()[1]


def is_healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=timeout).json().get("status") == "healthy"
    except (requests.RequestException, ValueError):
        return False


def wait_healthy(url: str, seconds: float, running: Callable[[], bool] = lambda: True) -> bool:
    """Ask /health every 0.1 s until it answers (True), or `seconds` pass or `running()` turns false (False)."""
    deadline = time.monotonic() + seconds
    while True:
        if is_healthy(url, timeout=0.5):
            return True
        if not running() or time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


class LocalLab:
    """A lab server in a child process on a free loopback port; a context manager that always stops it."""

    def __init__(self, port: int | None = None, startup_timeout: float = 60.0):
        self.port = port or free_port()
        self.url = f"http://{DEFAULT_HOST}:{self.port}"
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None

    def spawn(self) -> "LocalLab":
        """Start the server process without waiting for it (several labs then start side by side)."""
        command = [sys.executable, "-m", "benlab.lab_server", "--port", str(self.port), "--log-level", "warning"]
        # The child's banner would mix into our output (and break --json users); its warnings still go to stderr.
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
        return self

    def wait_ready(self) -> "LocalLab":
        if wait_healthy(self.url, self.startup_timeout, running=lambda: self.process.poll() is None):
            return self
        if self.process.poll() is not None:
            raise BenLabError(f"the local lab exited with code {self.process.returncode} while starting on port {self.port}")
        self.stop()
        raise BenLabError(f"the local lab did not answer on {self.url} within {self.startup_timeout:.0f} s")

    def start(self) -> "LocalLab":
        return self.spawn().wait_ready()

    def terminate(self) -> None:
        """Ask the server to shut down, without waiting (see stop)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        if self.process is None:
            return
        self.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "LocalLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_all(labs: list[LocalLab]) -> None:
    """Stop several labs side by side: each takes a few tenths of a second to shut down."""
    for lab in labs:
        lab.terminate()
    for lab in labs:
        lab.stop()


def env_port() -> int:
    value = os.environ.get("JARVIS_LAB_PORT", str(DEFAULT_PORT))
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise BenLabError(f"JARVIS_LAB_PORT={value!r} is not a port number; set it to 1-65535 or unset it")
    return int(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jarvis_api.py",
        description="Start the Jarvis Lab API: quantum phase experiments on an exact simulator, served over HTTP. "
        "Interactive API docs at http://HOST:PORT/docs.",
    )
    parser.add_argument("--host", default=os.environ.get("JARVIS_LAB_HOST", DEFAULT_HOST),
                        help="address to bind (env JARVIS_LAB_HOST; default %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port to listen on (env JARVIS_LAB_PORT; default {DEFAULT_PORT})")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="uvicorn log level (default %(default)s)")
    return parser.parse_args(argv)


def single_threaded_numerics() -> None:
    """The lab's arrays are small (at most 2^20 amplitudes, matrices of 1024 x 1024): one BLAS/OpenMP thread per
    request is fastest, and idle worker threads spin-waiting would take the CPU from the next request.
    Set before numpy loads; a value the user set wins."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def main(argv: list[str] | None = None) -> int:
    single_threaded_numerics()
    args = parse_args(argv)
    port = env_port() if args.port is None else args.port
    if not 1 <= port <= 65535:
        raise BenLabError(f"--port {port} is not a port number; use 1-65535")
    if port_in_use(args.host, port):
        raise BenLabError(
            f"port {port} on {args.host} is already in use (a lab may already be running: try "
            f"http://{args.host}:{port}/health); stop it or pick another port with --port"
        )
    if not is_loopback(args.host):
        print(
            f"WARNING: binding to {args.host} exposes the lab to other machines on the network. It has no "
            "authentication. Use --host 127.0.0.1 unless you mean to share it.",
            file=sys.stderr,
        )
    import uvicorn

    from benlab.api import app

    print(f"Jarvis Lab API on http://{args.host}:{port}  (docs: http://{args.host}:{port}/docs, Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
