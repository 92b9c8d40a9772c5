"""``entropy-sentinel proxy`` as a user runs it (the console script, a subprocess on a free
127.0.0.1 port), for tests and bench/proxy.py; stopped by its PID with SIGTERM, which makes it
score what is queued and flush its feature log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from llama_server.server import free_port

CLI = Path(sys.executable).parent / "entropy-sentinel"


class ProxyServer:
    """``with ProxyServer(upstream, estimator, log_dir, "--slice-header", "X-Slice") as p:``"""

    def __init__(self, upstream: str, estimator: Path, log_dir: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = Path(log_dir)
        self.output = self.log_dir.parent / f"proxy-{self.port}.log"
        self.command = [
            str(CLI), "proxy", "--upstream", upstream, "--estimator", str(estimator),
            "--listen", f"127.0.0.1:{self.port}", "--log-dir", str(log_dir), *args,
        ]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ProxyServer:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the proxy exited: {self.output.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"the proxy did not start; see {self.output}")

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> int | None:
        """SIGTERM (a graceful shutdown), SIGKILL after 20 s; the exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def stopped_cleanly(self) -> bool:
        """Stopped by SIGTERM (uvicorn re-raises it after its graceful shutdown), no traceback."""
        ok = self.process.returncode in (0, -signal.SIGTERM)
        return ok and "Traceback" not in self.output.read_text()

    def feature_logs(self) -> list[Path]:
        return sorted(self.log_dir.glob("features-*.jsonl"))

    def cpu_seconds(self) -> float:
        """The proxy process's CPU time so far (user + system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
