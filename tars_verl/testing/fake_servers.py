"""A real HTTP server on 127.0.0.1 that speaks the scorer protocols (TESTING / benchmarks only).

Endpoints: ``GET /v1/models``, ``GET /health``, ``POST /v1/moderations`` (OpenAI moderation),
``POST /v1/chat/completions`` (with ``logprobs`` / ``top_logprobs``), ``POST /v1/completions``,
``POST /classify`` (vLLM pooling). Replies are computed from the request text by small rules so
that tests know the expected score, and faults are scripted:

    with ScorerServer() as srv:
        srv.script = ["429", "ok"]      # first request: HTTP 429 (Retry-After: 0), then normal
        srv.latency_s = 0.05            # every request waits 50 ms
        url = srv.url + "/v1"

Rules: moderation flags text containing ``UNSAFE`` (category score 0.97) and ``MEH`` (0.35);
otherwise scores 0.02. Guards answer ``unsafe`` for ``UNSAFE`` text. The judge answers
``Score: N`` where N = len(response words) clipped to [1, 10]. ``/classify`` returns
logit = (len(text) % 7) - 3.
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def moderation_scores(text: str) -> dict[str, float]:
    worst = 0.97 if "UNSAFE" in text else 0.35 if "MEH" in text else 0.02
    return {"violence": worst, "harassment": 0.01, "self-harm": 0.005}


def judge_points(response: str) -> int:
    return max(1, min(10, len(response.split())))


def classify_logit(text: str) -> float:
    return float(len(text) % 7 - 3)


class ScorerServer:
    def __init__(self):
        self.script: list[str] = []  # per request: "ok", "429", "500", "badjson", "noverdict"
        self.latency_s = 0.0
        self.requests: list[tuple[str, dict]] = []
        self.connections = 0
        self.logprobs = True
        self.p_unsafe = 0.8  # guard's probability of its verdict token when text is UNSAFE
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ScorerServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is observable

            def setup(self):
                super().setup()
                with outer._lock:
                    outer.connections += 1

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path in ("/v1/models", "/health", "/models"):
                    self._send(200, json.dumps({"data": [{"id": "fake"}]}).encode())
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    outer.requests.append((self.path, payload))
                    action = outer.script.pop(0) if outer.script else "ok"
                if outer.latency_s:
                    time.sleep(outer.latency_s)
                if action == "429":
                    return self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0"})
                if action == "500":
                    return self._send(500, b'{"error": "boom"}')
                if action == "badjson":
                    return self._send(200, b'{"results": [')
                try:
                    reply = outer.reply(self.path, payload, action)
                except KeyError:
                    return self._send(404, b'{"error": "no such endpoint"}')
                self._send(200, json.dumps(reply).encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- protocol replies ---------------------------------------------------------------------
    def reply(self, path: str, payload: dict[str, Any], action: str) -> dict[str, Any]:
        if path == "/v1/moderations":
            inputs = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
            return {"results": [
                {"flagged": max(moderation_scores(t).values()) > 0.5, "category_scores": moderation_scores(t)}
                for t in inputs
            ]}
        if path == "/v1/chat/completions":
            content = payload["messages"][-1]["content"]
            if payload.get("max_tokens", 0) > 100:  # judge
                response = content.split("[Assistant response]\n")[-1].split("\n\n")[0]
                text = f"The answer is fine.\nScore: {judge_points(response)}"
                return {"choices": [{"message": {"role": "assistant", "content": text}}]}
            unsafe = "UNSAFE" in content
            if action == "noverdict":
                return {"choices": [{"message": {"role": "assistant", "content": "I am not sure."}}]}
            if payload.get("model", "").startswith("qwen3guard"):
                text = "Safety: Unsafe\nCategories: Violent" if unsafe else "Safety: Safe\nCategories: None"
                tokens = ["Safety", ":", " Unsafe" if unsafe else " Safe", "\n", "Categories"]
                alt = (" Unsafe", " Safe")
            else:
                text = "unsafe\nS1" if unsafe else "safe"
                tokens = ["unsafe", "\n", "S1"] if unsafe else ["safe"]
                alt = ("unsafe", "safe")
            choice: dict[str, Any] = {"message": {"role": "assistant", "content": text}}
            if payload.get("logprobs") and self.logprobs:
                p = self.p_unsafe
                verdict_alts = {alt[0]: math.log(p if unsafe else 1 - p), alt[1]: math.log(1 - p if unsafe else p)}
                content_lp = []
                for tok in tokens:
                    tops = verdict_alts if tok in alt else {tok: 0.0}
                    content_lp.append({"token": tok, "logprob": tops.get(tok, 0.0),
                                       "top_logprobs": [{"token": k, "logprob": v} for k, v in tops.items()]})
                choice["logprobs"] = {"content": content_lp}
            return {"choices": [choice]}
        if path == "/v1/completions":  # wildguard
            prompt = payload["prompt"]
            response = prompt.split("AI assistant:\n")[-1]
            harmful = "UNSAFE" in response
            refusal = "can't" in response
            text = (f" Harmful request: yes\nResponse refusal: {'yes' if refusal else 'no'}\n"
                    f"Harmful response: {'yes' if harmful else 'no'}")
            return {"choices": [{"text": text}]}
        if path == "/classify":
            inputs = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
            return {"data": [{"index": i, "label": "LABEL_0", "probs": [classify_logit(t)], "num_classes": 1}
                             for i, t in enumerate(inputs)]}
        raise KeyError(path)
