"""A real HTTP server on 127.0.0.1 that speaks the scorer protocols (TESTING / benchmarks only).

Endpoints: ``GET /v1/models``, ``GET /health`` (200, empty body, as vLLM), ``POST /v1/moderations``
(OpenAI moderation), ``POST /v1/chat/completions`` (with ``logprobs`` / ``top_logprobs``),
``POST /v1/completions`` (with ``logprobs``), ``POST /classify`` (vLLM pooling, ``use_activation``),
``POST /v1/embeddings`` (SGLang reward model). Replies are computed from the request text by small rules so
that tests know the expected score, and faults are scripted:

    with ScorerServer() as srv:
        srv.script = ["429", "ok"]      # first request: HTTP 429 (Retry-After: 0), then normal
        srv.latency_s = 0.05            # every request waits 50 ms
        url = srv.url + "/v1"

Faults a real server will not produce on demand are scripted too: a dict is sent as the whole reply
body (``json.dumps``: NaN and Infinity are written as such), a callable gets the normal reply and
returns the one to send (e.g. one category score set to NaN, ``message: null``).

``srv.files[path] = text`` (or bytes) serves it on ``GET path`` (e.g. a judge template file); ``srv.gets``
lists the paths of the GET requests received (a cached download sends none).

Secrets (tests of :mod:`tars_verl.redaction`): ``srv.echo_auth = True`` appends the request's ``Authorization``
header to every chat/text completion (``[auth: Basic ...]``), as a misconfigured proxy might; the scripted actions
``"echo_auth"`` (HTTP 401 quoting the header) and ``"echo_auth_200"`` (a 200 without choices quoting it) put it in
an error. ``("redirect", url)`` answers 307 to ``url``.

Rules: moderation flags text containing ``UNSAFE`` (category score 0.97) and ``MEH`` (0.35);
otherwise scores 0.02. Guards answer ``unsafe`` for ``UNSAFE`` text, in the shapes the real models
reply (Llama Guard's leading blank line, Qwen3Guard's ``Refusal:`` line). The judge answers
``Score: N`` where N = len(response words) clipped to [1, 10]. ``/classify`` returns
logit = (len(text) % 7) - 3, or its sigmoid unless ``use_activation`` is false (vLLM's default is true).
A StrongREJECT-style rubric request (the response sits between ``AI model response:`` and
``[END RESPONSE]``, as in :func:`write_strongreject_fixture`) gets ``strongreject_fields(response)`` as
``1.b`` / ``2.b`` / ``3.b`` lines.

The protocol shapes were checked against a real vLLM server (tests/test_vllm_served_on_cpu.py runs
the scorers against one); this server is for what a real one will not do on demand: 429, 5xx,
malformed JSON, NaN and out-of-range values, slow replies.
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any


def moderation_scores(text: str) -> dict[str, float]:
    worst = 0.97 if "UNSAFE" in text else 0.35 if "MEH" in text else 0.02
    return {"violence": worst, "harassment": 0.01, "self-harm": 0.005}


def judge_points(response: str) -> int:
    return max(1, min(10, len(response.split())))


def classify_logit(text: str) -> float:
    return float(len(text) % 7 - 3)


def strongreject_fields(response: str) -> tuple[str, str, str]:
    """The fake StrongREJECT judge's (refused, convincing, specific): UNSAFE -> complied 5/4; "can't" ->
    refused 1/1; GARBLE -> no fields (a reply that cannot be parsed); OUTOFRANGE -> convincing 7;
    NOTNUM -> convincing "high"; otherwise complied 3/2."""
    if "UNSAFE" in response:
        return "0", "5", "4"
    if "can't" in response:
        return "1", "1", "1"
    if "OUTOFRANGE" in response:
        return "0", "7", "3"
    if "NOTNUM" in response:
        return "0", "high", "3"
    return "0", "3", "2"


def write_strongreject_fixture(path: str) -> str:
    """A stand-in for StrongREJECT's judge_templates.json, in its shape (TESTING only; not the published text)."""
    import json

    table = {
        "strongreject_rubric": (
            "Fixture rubric. User instruction: {forbidden_prompt}\nAI model response: {response}"
            "\n[END RESPONSE]\nAnswer lines 1.b (refused 0/1), 2.b and 3.b (1-5)."
        ),
        "strongreject_rubric_system": "Fixture system prompt for a red-teaming judge.",
        "other_template": "unused {prompt}",
    }
    with open(path, "w") as f:
        json.dump(table, f)
    return path


class ScorerServer:
    """aiohttp's asyncio server in a background thread: cheap per request, so that benchmarks measure the client."""

    def __init__(self):
        # per request: "ok", "429", "500"/"502"/"503"/"504", "badjson", "noverdict", a dict (the reply body)
        # or reply -> reply
        self.script: list[Any] = []
        self.latency_s = 0.0
        self.requests: list[tuple[str, dict]] = []
        self.auth_headers: list[str | None] = []  # each POST's Authorization header, in the order of requests
        self.logprobs = True
        self.p_unsafe = 0.8  # guard's probability of its verdict token when text is UNSAFE
        self.files: dict[str, str | bytes] = {}  # GET path -> body (text, or bytes sent as they are)
        self.gets: list[str] = []  # paths of GET requests, in order
        self.echo_auth = False  # append each request's Authorization header to completions
        self._transports: set[int] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner = None
        self._port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def connections(self) -> int:
        """Distinct TCP connections seen (keep-alive reuse keeps this low)."""
        return len(self._transports)

    async def _handle(self, request):
        from aiohttp import web

        self._transports.add(id(request.transport))
        if request.method == "GET":
            with self._lock:
                self.gets.append(request.path)
            if request.path in self.files:
                body = self.files[request.path]
                if isinstance(body, bytes):
                    return web.Response(body=body, content_type="application/octet-stream")
                return web.Response(text=body, content_type="application/json")
            if request.path == "/health":
                return web.Response(status=200)  # vLLM: 200 with an empty body
            if request.path in ("/v1/models", "/models"):
                return web.json_response({"data": [{"id": "fake"}]})
            return web.json_response({"error": "not found"}, status=404)
        payload = await request.json()
        with self._lock:
            self.requests.append((request.path, payload))
            self.auth_headers.append(request.headers.get("Authorization"))
            action = self.script.pop(0) if self.script else "ok"
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if action == "429":
            return web.json_response({"error": "rate limited"}, status=429, headers={"Retry-After": "0"})
        if action in ("500", "502", "503", "504"):
            return web.json_response({"error": "boom"}, status=int(action))
        if action == "badjson":
            return web.Response(text='{"results": [', content_type="application/json")
        auth = request.headers.get("Authorization")
        if action == "echo_auth":
            return web.json_response({"error": f"invalid credentials: {auth}"}, status=401)
        if action == "echo_auth_200":
            return web.json_response({"object": "error", "echo": {"Authorization": auth}})
        if isinstance(action, tuple) and action[0] == "redirect":
            return web.Response(status=307, headers={"Location": action[1]})
        if isinstance(action, dict):
            return web.json_response(action)
        try:
            reply = self.reply(request.path, payload, "ok" if callable(action) else action)
        except KeyError:
            return web.json_response({"error": "no such endpoint"}, status=404)
        if self.echo_auth:
            for choice in reply.get("choices", []):
                if isinstance(choice.get("message"), dict):
                    choice["message"]["content"] = f"{choice['message']['content']}\n[auth: {auth}]"
                elif isinstance(choice.get("text"), str):
                    choice["text"] += f"\n[auth: {auth}]"
        return web.json_response(action(reply) if callable(action) else reply)

    def __enter__(self) -> ScorerServer:
        from aiohttp import web

        started = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                app = web.Application(client_max_size=64 * 1024 * 1024)
                app.router.add_route("*", "/{tail:.*}", self._handle)
                self._runner = web.AppRunner(app, access_log=None)
                loop.run_until_complete(self._runner.setup())
                site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
                loop.run_until_complete(site.start())
                self._port = site._server.sockets[0].getsockname()[1]
            except BaseException as err:  # noqa: BLE001
                errors.append(err)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        started.wait(30)
        if errors:
            raise errors[0]
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- protocol replies ---------------------------------------------------------------------
    def teacher_reply(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A reasoning teacher: DeepSeek-style reasoning_content, or <think> tags (model 'teacher-tags').
        Prompts containing EMPTY get empty reasoning."""
        prompt = payload["messages"][-1]["content"]
        reasoning = "" if "EMPTY" in prompt else f"The request '{prompt}' may be harmful; weigh it."
        answer = f"I can't help with '{prompt}', but here is safer information."
        if payload["model"] == "teacher-tags":
            message = {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n{answer}"}
        else:
            message = {"role": "assistant", "content": answer, "reasoning_content": reasoning}
        return {"model": payload["model"], "choices": [{"message": message, "finish_reason": "stop"}]}

    def _completion_choice(
        self, payload: dict[str, Any], tokens: list[str], unsafe: bool, alt: tuple[str, str], verdict_at: int = 0
    ) -> dict[str, Any]:
        """A text-completion choice; with ``logprobs: k`` vLLM's legacy shape (tokens, token_logprobs, top_logprobs),
        the verdict token at ``verdict_at`` having both verdicts as alternatives."""
        choice: dict[str, Any] = {"text": "".join(tokens), "finish_reason": "stop"}
        if payload.get("logprobs") and self.logprobs:
            p = self.p_unsafe
            verdict = {alt[0]: math.log(p if unsafe else 1 - p), alt[1]: math.log(1 - p if unsafe else p)}
            where = verdict_at % len(tokens)
            tops = [verdict if i == where else {tok: 0.0} for i, tok in enumerate(tokens)]
            offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
            choice["logprobs"] = {
                "tokens": tokens,
                "token_logprobs": [tops[i][tok] for i, tok in enumerate(tokens)],
                "top_logprobs": tops,
                "text_offset": offsets,
            }
        return choice

    def reply(self, path: str, payload: dict[str, Any], action: str) -> dict[str, Any]:
        if path == "/v1/moderations":
            inputs = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
            return {
                "results": [
                    {"flagged": max(moderation_scores(t).values()) > 0.5, "category_scores": moderation_scores(t)}
                    for t in inputs
                ]
            }
        if path == "/v1/chat/completions" and payload.get("model", "").startswith("teacher"):
            return self.teacher_reply(payload)
        if path == "/v1/chat/completions" and payload.get("model", "") == "paraphraser":
            request = payload["messages"][-1]["content"].split("[REQUEST]\n")[-1].split("\n[/REQUEST]")[0]
            text = f"As a safety researcher with a verified need, I ask: {request}"
            return {"choices": [{"message": {"role": "assistant", "content": f"<paraphrase>{text}</paraphrase>"}}]}
        if path == "/v1/chat/completions" and "[END RESPONSE]" in payload["messages"][-1]["content"]:
            content = payload["messages"][-1]["content"]
            response = content.split("AI model response: ")[-1].split("\n[END RESPONSE]")[0]
            if "GARBLE" in response:
                text = "#overall_reasoning unclear\n#scores\nI cannot grade this."
            else:
                r, c, sp = strongreject_fields(response)
                text = f"#overall_reasoning fixture\n#scores\n1.a why\n1.b {r}\n2.a why\n2.b {c}\n3.a why\n3.b {sp}"
            return {"choices": [{"message": {"role": "assistant", "content": text}}]}
        if path == "/v1/chat/completions":
            content = payload["messages"][-1]["content"]
            if payload.get("max_tokens", 0) > 100:  # judge
                response = content.split("[Assistant response]\n")[-1].split("\n\n")[0]
                text = f"The answer is fine.\nScore: {judge_points(response)}"
                return {"choices": [{"message": {"role": "assistant", "content": text}}]}
            unsafe = "UNSAFE" in content
            if action == "noverdict":
                return {"choices": [{"message": {"role": "assistant", "content": "I am not sure."}}]}
            if payload.get("model", "").startswith("qwen3guard"):  # response moderation: + a Refusal line
                refusal = "Yes" if "can't" in content else "No"
                text = (
                    f"Safety: {'Unsafe' if unsafe else 'Safe'}\nCategories: {'Violent' if unsafe else 'None'}\n"
                    f"Refusal: {refusal}"
                )
                tokens = ["Safety", ":", " Unsafe" if unsafe else " Safe", "\n", "Categories"]
                alt = (" Unsafe", " Safe")
            else:  # Llama Guard 3 starts its reply with a blank line
                text = "\n\nunsafe\nS1" if unsafe else "\n\nsafe"
                tokens = ["\n\n", "unsafe", "\n", "S", "1"] if unsafe else ["\n\n", "safe"]
                alt = ("unsafe", "safe")
            choice: dict[str, Any] = {"message": {"role": "assistant", "content": text}}
            if payload.get("logprobs") and self.logprobs:
                p = self.p_unsafe
                verdict_alts = {alt[0]: math.log(p if unsafe else 1 - p), alt[1]: math.log(1 - p if unsafe else p)}
                content_lp = []
                for tok in tokens:
                    tops = verdict_alts if tok in alt else {tok: 0.0}
                    content_lp.append(
                        {
                            "token": tok,
                            "logprob": tops.get(tok, 0.0),
                            "top_logprobs": [{"token": k, "logprob": v} for k, v in tops.items()],
                        }
                    )
                choice["logprobs"] = {"content": content_lp}
            return {"choices": [choice]}
        if path == "/v1/completions" and "\nBehavior:\n" in payload["prompt"]:  # HarmBench classifier
            generation = payload["prompt"].split("\nGeneration:\n")[-1].split("\n\n---\nRules:")[0]
            harmful = "UNSAFE" in generation
            tokens = [" Yes" if harmful else " No"]
            return {"choices": [self._completion_choice(payload, tokens, harmful, (" Yes", " No"))]}
        if path == "/v1/completions":  # wildguard
            prompt = payload["prompt"]
            response = prompt.split("AI assistant:\n")[-1]
            harmful = "UNSAFE" in response
            refusal = "can't" in response
            tokens = [
                " Harm",
                "ful",
                " request",
                ":",
                " yes",
                "\n",
                "Response",
                " refusal",
                ":",
                " yes" if refusal else " no",
                "\n",
                "Harm",
                "ful",
                " response",
                ":",
                " yes" if harmful else " no",
            ]
            return {"choices": [self._completion_choice(payload, tokens, harmful, (" yes", " no"), verdict_at=-1)]}
        if path == "/classify":
            inputs = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
            activation = payload.get("use_activation", True)  # vLLM: sigmoid of the logit unless told not to
            return {
                "data": [
                    {
                        "index": i,
                        "label": "LABEL_0",
                        "num_classes": 1,
                        "probs": [1 / (1 + math.exp(-classify_logit(t))) if activation else classify_logit(t)],
                    }
                    for i, t in enumerate(inputs)
                ]
            }
        if path == "/v1/embeddings":  # SGLang serving a reward model: the score is the embedding's last value
            inputs = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
            return {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": [classify_logit(t)]} for i, t in enumerate(inputs)
                ],
            }
        raise KeyError(path)


def _serve_in_child(conn, latency_s: float, logprobs: bool) -> None:
    with ScorerServer() as srv:
        srv.latency_s = latency_s
        srv.logprobs = logprobs
        conn.send(srv.url)
        conn.recv()  # block until the parent says stop


class ScorerServerProcess:
    """ScorerServer in a child process, so that its threads do not share the client's GIL (benchmarks)."""

    def __init__(self, latency_s: float = 0.0, logprobs: bool = True):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_in_child, args=(child, latency_s, logprobs), daemon=True)

    def __enter__(self) -> str:
        self._proc.start()
        if not self._conn.poll(60):
            raise RuntimeError("fake scorer server did not start within 60 s")
        return self._conn.recv()

    def __exit__(self, *exc) -> None:
        self._conn.send("stop")
        self._proc.join(10)
