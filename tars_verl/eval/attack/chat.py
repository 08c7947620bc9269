"""The chat models a black-box attack talks to: served models behind OpenAI-compatible endpoints (``vllm serve`` or
any API), or the model under test loaded locally.

- :class:`ChatClient`: chat completions through the project's HTTP layer (:mod:`tars_verl.scorers.http_client`:
  pooled connections, bounded concurrency, retries with back-off and jitter; the API key is read from the
  environment variable the config names and never shown). ``continue_final=True`` continues a pre-filled last
  assistant message (vLLM's ``continue_final_message``), the way HarmBench pre-fills its open-source attacker and
  judge. :meth:`ChatClient.check_ready` lists the endpoint's models at start-up: an unreachable URL or a model it does
  not serve fails there, naming the role and the URL.
- :func:`make_responder`: the model under test as a fixed-settings responder (PAIR's target): an endpoint
  (``--model http://host:8000/v1``) or a local folder / hub id, generated with the evaluation's back ends
  (:mod:`tars_verl.eval.generate`: ``hf`` or ``vllm``), concurrent requests batched together.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
from typing import Any

from tars_verl.errors import ScorerError

# tars_verl.scorers.http_client is imported where a client is made: importing the scorers package loads torch, which
# the runner (and every Ray worker of a cluster run) should not pay for just to read behaviours.


def run_in_thread(coro_factory):
    """Run ``coro_factory()`` in a private event loop on another thread (usable from inside a running loop)."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro_factory()))
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(err)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return result[0]


def is_endpoint(model: str) -> bool:
    return bool(re.match(r"^https?://", model or ""))


class ChatClient:
    """One served chat model (``role`` names it in messages: attacker, judge, target)."""

    def __init__(
        self,
        role: str,
        url: str,
        model: str = "",
        api_key_env: str | None = None,
        max_concurrency: int = 64,
        timeout_s: float = 300.0,
        max_retries: int = 5,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        standard_params_only: bool = False,
    ):
        from tars_verl.scorers.http_client import HttpEndpoint, redact_url

        if not url:
            raise ValueError(f"{role}: no endpoint URL (give --{role}-url http://host:port/v1)")
        if not is_endpoint(url):
            raise ValueError(f"{role}: {redact_url(url)} is not an http(s) URL of an OpenAI-compatible endpoint")
        api_key = None
        if api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ValueError(f"{role}: environment variable {api_key_env} (the API key) is not set")
        self.role = role
        self.model = model
        self.standard_params_only = standard_params_only
        self._url, self._api_key = url, api_key
        self.endpoint = HttpEndpoint(
            url,
            api_key=api_key,
            timeout_s=timeout_s,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
        )

    @property
    def url(self) -> str:
        return self.endpoint.base_url  # redacted

    def check_ready(self) -> None:
        """GET ``/models`` (a few quick retries): the endpoint answers and serves ``model``; with no model named,
        the endpoint must serve exactly one, which is then used."""

        from tars_verl.scorers.http_client import HttpEndpoint

        async def probe():
            ep = HttpEndpoint(self._url, api_key=self._api_key, timeout_s=30, max_retries=2, backoff_initial_s=0.2)
            try:
                return await ep.request_json("GET", "/models")
            finally:
                await ep.aclose()

        try:
            body = run_in_thread(probe)
        except ScorerError as err:
            raise ScorerError(f"{self.role}: the endpoint {self.url} cannot be reached: {err}") from None
        try:
            served = [m["id"] for m in body["data"]]
        except (KeyError, TypeError) as err:
            raise ScorerError(f"{self.role}: {self.url}/models did not list models ({str(body)[:200]!r})") from err
        if not self.model:
            if len(served) != 1:
                raise ValueError(f"{self.role}: {self.url} serves {served}; name one with --{self.role}-model")
            self.model = served[0]
        elif self.model not in served:
            raise ValueError(f"{self.role}: {self.url} does not serve {self.model!r}; it serves {served}")

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float,
        max_tokens: int,
        stop: list[str] | None = None,
        continue_final: bool = False,
        seed: int | None = None,
        top_p: float = 1.0,
    ) -> str:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
        }
        if not self.standard_params_only:
            # vLLM applies the served model's generation_config to the sampling fields a request leaves out (a
            # Qwen's top_k=20...); HarmBench's own vLLM calls sample with no top-k and no repetition penalty.
            payload.update(top_k=-1, repetition_penalty=1.0)
        if stop:
            payload["stop"] = list(stop)
        if seed is not None:
            payload["seed"] = seed
        if continue_final:  # vLLM: render the last (assistant) message open and continue it
            if self.standard_params_only:
                raise ValueError(
                    f"{self.role}: pre-filling a reply needs vLLM's continue_final_message; use the api style"
                )
            payload.update(continue_final_message=True, add_generation_prompt=False)
        body = await self.endpoint.post_json("/chat/completions", payload)
        from tars_verl.scorers.http_client import only_choice

        try:  # exactly one choice (n=1): several, or one with another index, is an error naming the endpoint
            return (
                only_choice(body, f"{self.role}: {self.endpoint.where('/chat/completions')}")["message"]["content"]
                or ""
            )
        except (KeyError, IndexError, TypeError) as err:
            raise ScorerError(
                f"{self.role}: {self.url}/chat/completions: no choices[0].message.content in {str(body)[:200]!r}"
            ) from err

    async def aclose(self) -> None:
        await self.endpoint.aclose()


def cut_at_stop(text: str, stop: list[str] | None) -> str:
    """``text`` up to the first stop string (as a server's ``stop`` returns it: the stop string itself excluded)."""
    cut = len(text)
    for s in stop or []:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


class EndpointResponder:
    """The model under test behind an endpoint, answering with fixed sampling settings."""

    def __init__(self, client: ChatClient, temperature: float, max_tokens: int, stop: list[str] | None):
        self.client, self.temperature, self.max_tokens, self.stop = client, temperature, max_tokens, stop

    def identity(self) -> dict:
        return {"kind": "endpoint", "model": self.client.model}

    def check_ready(self) -> None:
        self.client.check_ready()

    async def respond(self, messages: list[dict[str, str]]) -> str:
        return await self.client.chat(
            messages, temperature=self.temperature, max_tokens=self.max_tokens, stop=self.stop
        )

    async def aclose(self) -> None:
        await self.client.aclose()


class LocalResponder:
    """The model under test loaded here (``hf`` or ``vllm`` back end of the evaluation); concurrent requests are
    gathered into one batched ``generate`` call at a time (at most ``batch_size`` each)."""

    def __init__(
        self,
        path: str,
        backend: str,
        temperature: float,
        max_tokens: int,
        stop: list[str] | None,
        batch_size: int = 64,
        seed: int = 0,
    ):
        from tars_verl.eval.generate import GenConfig

        self.path, self.stop, self.seed = path, stop, seed
        self.cfg = GenConfig(
            backend=backend,
            temperature=temperature,
            max_new_tokens=max_tokens,
            batch_size=batch_size,
            chunk_size=batch_size,
            seed=seed,
        )
        self.cfg.validate()
        if backend == "openai":
            raise ValueError("a local target model needs --backend hf or vllm (for an endpoint, give its URL)")
        self.generator = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    def identity(self) -> dict:
        from tars_verl.eval.generate import model_fingerprint, resolve_backend

        return model_fingerprint(self.path, resolve_backend(self.cfg.backend))

    def check_ready(self) -> None:
        """Load the model (the start-up check that it can be loaded at all)."""
        from tars_verl.eval.generate import make_generator

        if self.generator is None:
            try:
                self.generator = make_generator(self.path, self.cfg)
            except Exception as err:  # noqa: BLE001 - any load failure is the same error for the user
                raise ValueError(f"target model {self.path}: cannot be loaded ({type(err).__name__}: {err})") from err

    async def respond(self, messages: list[dict[str, str]]) -> str:
        if self.generator is None:
            self.check_ready()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve())
        text = self.generator.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((text, fut))
        return await fut

    async def _serve(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < self.cfg.batch_size:
                batch.append(self._queue.get_nowait())
            texts = [t for t, _ in batch]
            seeds = [
                int.from_bytes(hashlib.sha256(f"{self.seed}\0{t}".encode()).digest()[:4], "little") & 0x7FFFFFFF
                for t in texts
            ]
            try:
                outs = await asyncio.to_thread(self.generator.generate, texts, seeds)
            except Exception as err:  # noqa: BLE001 - handed to every waiting request
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for (_, fut), out in zip(batch, outs):
                if not fut.done():
                    fut.set_result(cut_at_stop(out, self.stop))

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._worker, self._queue = None, None

    def close(self) -> None:
        if self.generator is not None:
            self.generator.close()
            self.generator = None


def make_responder(
    model: str,
    *,
    temperature: float,
    max_tokens: int,
    stop: list[str] | None,
    model_name: str = "",
    api_key_env: str | None = None,
    backend: str = "auto",
    max_concurrency: int = 64,
    timeout_s: float = 300.0,
    max_retries: int = 5,
    standard_params_only: bool = False,
):
    """The model under test: an endpoint URL (its served ``model_name``, or the one model it serves) or a local
    model folder / hub id."""
    if is_endpoint(model):
        client = ChatClient(
            "target",
            model,
            model_name,
            api_key_env,
            max_concurrency,
            timeout_s,
            max_retries,
            standard_params_only=standard_params_only,
        )
        return EndpointResponder(client, temperature, max_tokens, stop)
    return LocalResponder(model, backend, temperature, max_tokens, stop)
