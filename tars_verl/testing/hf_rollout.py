"""A transformers ``generate`` rollout for verl, so GRPO runs end to end on CPU (TESTING only).

verl 0.9 ships server-mode rollouts only (vLLM, SGLang, TRT-LLM), none of which runs on a CPU-only
machine. This module adds a rollout named ``tars_hf`` through verl's plug-in points, so the real
trainer (``verl.trainer.main_ppo``), agent loop, reward loop and weight sync are exercised in CI:

- ``HFRolloutReplica`` (``RolloutReplicaRegistry.register("tars_hf", ...)``): starts one Ray actor,
  ``HFGenerateServer``, per replica; the agent loop calls its token-in/token-out ``generate``.
- ``HFServerAdapter`` (the rollout object inside verl's hybrid actor worker): receives the actor's
  weights in ``update_weights`` and forwards them to the server actor, so every step samples from the
  current policy. verl has no registration function for these adapters: it is registered through
  ``verl_workarounds.register_rollout_adapter`` (workaround ``rollout_adapter_registry``).

- ``HFRewardModelServer``: when verl serves the reward model itself (``reward.reward_model.enable=True``,
  ``reward.reward_model.rollout.name=tars_hf``), the replica starts this actor instead: a
  sequence-classification model behind a real HTTP ``/classify`` on 127.0.0.1, as vLLM serves it, so
  verl's router and the ``served_reward_model`` scorer (``url: verl``) talk to it as on a GPU cluster.
  Sleep and wake are no-ops. ``TARS_HF_RM_REQUEST_LOG=<file>`` appends one JSON line per request
  (tests count them).

Requests that arrive together (verl's agent loop sends a whole step's at once) are decoded together, in
batches of up to ``max_num_seqs`` (at most 256), with a KV cache; each deterministic request samples from its
own random stream (``full_determinism``, see ``request_seed``), so a sample does not depend on which batch it
landed in, up to float rounding. It exists to test verl's loop and our plug-ins, and to train tiny models
(the learning demo, ``tars_verl/learning_demo.py``). Load it in every process together with the CPU platform::

    VERL_USE_EXTERNAL_MODULES=tars_verl.testing.cpu_platform,tars_verl.testing.hf_rollout \\
    VERL_PLATFORM=cpu ROLLOUT_NAME=tars_hf bash examples/run_tars_qwen1.5b.sh ...

(``tars_verl.testing.cpu_platform.cpu_env()`` returns these variables.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Optional

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutMode, RolloutReplica, RolloutReplicaRegistry, TokenOutput

from tars_verl.reward.batching import MicroBatcher
from tars_verl.verl_workarounds import register_rollout_adapter

logger = logging.getLogger(__name__)

ROLLOUT_NAME = "tars_hf"
MAX_BATCH = 256  # sequences decoded together (rollout.max_num_seqs caps it further)
BATCH_WAIT_MS = 20.0  # how long the first request of a batch waits for the others verl sends with it


@dataclass
class _Request:
    prompt_ids: list[int]
    params: dict[str, Any]
    seed: Optional[int]  # None: the shared generator


def server_actor_name(replica_rank: int) -> str:
    return f"{ROLLOUT_NAME}_server_{replica_rank}"


def _cfg(obj: Any, key: str, default: Any = None) -> Any:
    """Read a field from a dataclass or a DictConfig (verl passes either, depending on the caller)."""
    return obj.get(key, default) if hasattr(obj, "get") else getattr(obj, key, default)


class HFGenerateServer:
    """One rollout server: a transformers model that samples one sequence per ``generate`` call.

    Implements the methods verl's agent loop and checkpoint manager call on a server actor; the ones
    that manage GPU memory (sleep, KV cache) have nothing to do on CPU.
    """

    def __init__(self, config: Any, model_config: Any, replica_rank: int):
        from transformers import AutoModelForCausalLM

        self.config = config
        self.replica_rank = replica_rank
        path = _cfg(model_config, "local_path") or _cfg(model_config, "path")
        trust = bool(_cfg(model_config, "trust_remote_code", False))
        self.model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, trust_remote_code=trust)
        self.model.eval()
        gen_cfg = self.model.generation_config
        eos = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else self.model.config.eos_token_id
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        self.pad_id = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else (self.eos_ids or [0])[0]
        seed = _cfg(config, "seed", 0) or 0
        self.generator_seed = int(seed) + 1000 * replica_rank
        torch.manual_seed(self.generator_seed)
        # verl's rollout.full_determinism=True names requests "det-<priority>" (single_turn_agent_loop.py, verl
        # 0.9.1): each such request then samples with its own seed, whatever order the requests arrive in. The v1
        # trainers' agent loop (trainer/ppo/v1/agent_loop_tq.py) sets no priority, so every request is "det-0" and
        # the rollout.n samples of one prompt are identical requests: `_occurrences` numbers them (see request_seed).
        self.full_determinism = bool(_cfg(config, "full_determinism", False))
        self._occurrences: dict[str, int] = {}
        self.global_steps = 0
        self.weight_version = 0  # how many weight updates this server has loaded
        self._lock = asyncio.Lock()  # a batch and a weight update never overlap
        max_seqs = int(_cfg(config, "max_num_seqs", 0) or 0) or MAX_BATCH
        self._batcher = MicroBatcher(self._decode_locked, min(max_seqs, MAX_BATCH), BATCH_WAIT_MS)

    # -- generation ------------------------------------------------------------------------------
    def _max_new_tokens(self, prompt_len: int, sampling_params: dict) -> int:
        prompt_length, response_length = (
            int(_cfg(self.config, "prompt_length")),
            int(_cfg(self.config, "response_length")),
        )
        max_model_len = _cfg(self.config, "max_model_len") or (prompt_length + response_length)
        room = int(max_model_len) - prompt_len
        if room < 1:
            raise ValueError(f"prompt of {prompt_len} tokens leaves no room within max_model_len={max_model_len}")
        wanted = sampling_params.get("max_tokens", sampling_params.get("max_new_tokens"))
        if wanted is None:
            wanted = min(response_length, prompt_length + response_length - prompt_len)
        return max(1, min(int(wanted), room))

    def request_seed(self, request_id: str, prompt_ids: list[int]) -> Optional[int]:
        """The sampling seed of a deterministic request (``full_determinism``), else None (the shared generator).

        Stable across processes and runs: the rollout seed, the weights' training step, the request id, the prompt
        and how many identical requests (same step, id and prompt) came before this one, hashed with SHA-256 (not
        Python's randomised ``hash``). The count is what keeps the ``rollout.n`` samples of one prompt apart when
        verl sends them as identical requests (all ``det-0``): without it every GRPO group would be n copies of one
        sample, each advantage 0, and nothing would be learned. Which of the identical requests gets which seed
        depends on arrival order, but they are interchangeable, so the set of samples of a group does not.
        """
        if not (self.full_determinism and str(request_id).startswith("det-")):
            return None
        key = f"{self.generator_seed}|{self.global_steps}|{request_id}|{','.join(map(str, prompt_ids))}"
        occurrence = self._occurrences.get(key, 0)
        self._occurrences[key] = occurrence + 1
        return int.from_bytes(hashlib.sha256(f"{key}|{occurrence}".encode()).digest()[:8], "little")

    async def _decode_locked(self, requests: list[_Request]) -> list[TokenOutput]:
        async with self._lock:
            return await asyncio.to_thread(self._decode, requests)

    def _decode(self, requests: list[_Request]) -> list[TokenOutput]:
        """Decode ``requests`` together: left-padded prompts, one forward per new token with a KV cache, each row
        sampled from its own stream (its seed, or the shared generator) by inverse CDF."""
        from transformers import DynamicCache

        n = len(requests)
        prompt_lens = [len(r.prompt_ids) for r in requests]
        limits = [self._max_new_tokens(len(r.prompt_ids), r.params) for r in requests]
        temps = [float(r.params.get("temperature", 1.0) or 0.0) for r in requests]
        width = max(prompt_lens)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(requests):
            input_ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids, dtype=torch.long)
            attention[i, width - len(r.prompt_ids) :] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        streams = [torch.Generator().manual_seed(r.seed) if r.seed is not None else None for r in requests]
        tokens: list[list[int]] = [[] for _ in requests]
        log_probs: list[list[float]] = [[] for _ in requests]
        active = [True] * n
        cache = DynamicCache()
        step_ids, step_positions = input_ids, positions
        with torch.no_grad():
            while any(active):
                logits = (
                    self.model(
                        input_ids=step_ids,
                        attention_mask=attention,
                        position_ids=step_positions,
                        past_key_values=cache,
                        use_cache=True,
                    )
                    .logits[:, -1, :]
                    .float()
                )
                was_active = list(active)
                next_ids = torch.full((n, 1), self.pad_id, dtype=torch.long)
                for i, r in enumerate(requests):
                    if not active[i]:
                        continue
                    token, log_prob = self._pick(logits[i], r, temps[i], tokens[i], streams[i])
                    tokens[i].append(token)
                    log_probs[i].append(log_prob)
                    next_ids[i, 0] = token
                    if token in self.eos_ids or len(tokens[i]) >= limits[i]:
                        active[i] = False
                # Rows that finished before this step feed padding that nothing attends to.
                attention = torch.cat([attention, torch.tensor(was_active, dtype=torch.long)[:, None]], dim=1)
                step_ids, step_positions = next_ids, step_positions[:, -1:] + 1
        return [
            TokenOutput(
                token_ids=toks,
                log_probs=lps,
                stop_reason="completed",
                extra_fields={
                    "global_steps": self.global_steps,
                    "finish_reason": "stop" if toks and toks[-1] in self.eos_ids else "length",
                },
            )
            for toks, lps in zip(tokens, log_probs)
        ]

    @staticmethod
    def _pick(
        logits: torch.Tensor, request: _Request, temperature: float, generated: list[int], stream
    ) -> tuple[int, float]:
        """One token for one row, and its log-prob under the sampling distribution (temperature applied, before
        top-k / top-p, as vLLM reports it); greedy when the temperature is 0."""
        params = request.params
        penalty = float(params.get("repetition_penalty", 1.0) or 1.0)
        if penalty != 1.0:  # transformers' rule: seen tokens' logits divided (positive) or multiplied (negative)
            seen = torch.tensor(sorted(set(request.prompt_ids) | set(generated)), dtype=torch.long)
            values = logits[seen]
            logits = logits.clone()
            logits[seen] = torch.where(values > 0, values / penalty, values * penalty)
        if temperature <= 0:
            token = int(logits.argmax())
            return token, float(torch.log_softmax(logits, -1)[token])
        scaled = logits / temperature
        log_p = torch.log_softmax(scaled, -1)
        probs = log_p.exp()
        top_k = int(params.get("top_k", -1) or -1)  # -1 (verl) or 0: no top-k
        if 0 < top_k < probs.numel():
            probs = torch.where(probs >= probs.topk(top_k).values[-1], probs, torch.zeros_like(probs))
        top_p = float(params.get("top_p", 1.0) or 1.0)
        if top_p < 1.0:
            ordered, order = probs.sort(descending=True)
            keep = ordered.cumsum(-1) - ordered < top_p * ordered.sum()  # the smallest head reaching top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
        cdf = probs.cumsum(-1)
        u = float(torch.rand(1, generator=stream)) if stream is not None else float(torch.rand(1))
        # right=True: the first token whose cdf exceeds u * total, so a zero-probability token is never picked.
        token = int(torch.searchsorted(cdf, torch.tensor([u * float(cdf[-1])]), right=True).clamp(max=cdf.numel() - 1))
        return token, float(log_p[token])

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Optional[list[Any]] = None,
        video_data: Optional[list[Any]] = None,
        **kwargs: Any,
    ) -> TokenOutput:
        if image_data or video_data:
            raise NotImplementedError(f"{ROLLOUT_NAME} rollout is text-only (request {request_id} has media)")
        prompt_ids = list(prompt_ids)
        self._max_new_tokens(len(prompt_ids), sampling_params)  # a prompt too long fails alone, before batching
        seed = self.request_seed(request_id, prompt_ids)
        return await self._batcher.submit(_Request(prompt_ids, dict(sampling_params), seed))

    # -- weight sync -----------------------------------------------------------------------------
    async def update_weights(self, named_tensors: dict[str, torch.Tensor], global_steps: Optional[int] = None) -> int:
        """Load the actor's weights (HF names); returns how many tensors were loaded."""
        async with self._lock:
            state = self.model.state_dict()
            unknown = sorted(set(named_tensors) - set(state))
            if unknown:
                raise KeyError(f"{ROLLOUT_NAME}: the actor sent weights this model does not have: {unknown[:5]}")
            with torch.no_grad():
                for name, tensor in named_tensors.items():
                    state[name].copy_(tensor.to(state[name].dtype))
            self.weight_version += 1
            if global_steps is not None:
                self._set_global_steps(int(global_steps))
        return len(named_tensors)

    async def set_global_steps(self, global_steps: int):
        self._set_global_steps(int(global_steps))

    def _set_global_steps(self, global_steps: int) -> None:
        if global_steps != self.global_steps:
            self._occurrences.clear()  # the step is part of every key: the old counts can never match again
        self.global_steps = global_steps

    def stats(self) -> dict[str, int]:
        """How many weight updates were loaded, and the weights' training step."""
        return {"weight_version": self.weight_version, "global_steps": self.global_steps}

    # -- memory management: nothing to free on CPU -----------------------------------------------
    async def wake_up(self, tags: Optional[list[str]] = None):
        pass

    async def sleep(self):
        pass

    async def clear_kv_cache(self):
        pass

    async def release_kv_cache(self):
        pass

    async def resume_kv_cache(self):
        pass

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict:
        return {"aborted_count": 0, "request_ids": []}

    async def abort_request(self, request_id: str, reset_prefix_cache: bool = True) -> dict:
        return {"aborted": False, "request_id": request_id}

    async def resume_generation(self):
        pass

    async def wait_for_requests_to_drain(self):
        async with self._lock:
            pass

    async def start_profile(self, **kwargs):
        pass

    async def stop_profile(self):
        pass


class HFRolloutReplica(RolloutReplica):
    """A rollout replica served by one ``HFGenerateServer`` Ray actor (CPU)."""

    def rollout_worker_use_gpu(self) -> bool:
        return False

    async def launch_servers(self):
        server_cls = ray.remote(HFGenerateServer)
        server = server_cls.options(
            name=server_actor_name(self.replica_rank), num_cpus=0, max_concurrency=self.max_concurrency
        ).remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        await server.stats.remote()  # surfaces a model-loading error here, at start-up
        self.servers = [server]
        self._server_handle = server
        # The agent loop's load balancer keys servers by address; there is no HTTP endpoint behind it.
        self._server_address = f"{ROLLOUT_NAME}-replica-{self.replica_rank}"

    # A reward model verl serves itself (RewardModelManager): no weight-sync workers, an HTTP /classify server.
    async def init_colocated(self, resource_pool):
        if not self.is_reward_model:
            return await super().init_colocated(resource_pool)
        self.rollout_mode, self.resource_pool = RolloutMode.COLOCATED, resource_pool
        await _launch_reward_model_server(self)

    async def init_standalone(self):
        if not self.is_reward_model:
            return await super().init_standalone()
        self.rollout_mode = RolloutMode.STANDALONE
        await _launch_reward_model_server(self)


class HFRewardModelServer:
    """A reward model served as vLLM serves one for verl: ``POST /classify`` and ``GET /health`` over HTTP.

    ``/classify`` takes ``{"model", "input": str | list[str], "use_activation": bool}`` and answers
    ``{"data": [{"index", "label", "probs", "num_classes"}]}``: ``probs`` are the model's logits, passed
    through sigmoid (1 label) or softmax when ``use_activation`` is true (vLLM's default), raw otherwise.
    Binds 127.0.0.1 on a free port; ``address()`` is what verl's router forwards to.
    """

    def __init__(self, model_config: Any, replica_rank: int):
        import os
        import threading

        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = _cfg(model_config, "local_path") or _cfg(model_config, "path")
        trust = bool(_cfg(model_config, "trust_remote_code", False))
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, torch_dtype=torch.float32, trust_remote_code=trust
        )
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
        self.replica_rank = replica_rank
        self.request_log = os.environ.get("TARS_HF_RM_REQUEST_LOG")
        self.counts = {"requests": 0, "inputs": 0, "wake_up": 0, "sleep": 0}
        self._count_lock = threading.Lock()
        self._port = 0
        self._started = threading.Event()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._started.wait(60) or self._errors:
            raise RuntimeError(f"{ROLLOUT_NAME} reward model server did not start: {self._errors}")

    def _classify(self, texts: list[str], use_activation: bool) -> list[dict[str, Any]]:
        data = []
        with torch.no_grad():
            for i, text in enumerate(texts):  # one at a time: no padding, so each score is batch-independent
                enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
                logits = self.model(**enc).logits[0].float()
                if use_activation:
                    logits = torch.sigmoid(logits) if logits.numel() == 1 else torch.softmax(logits, dim=-1)
                data.append(
                    {
                        "index": i,
                        "label": self.model.config.id2label.get(int(logits.argmax()), "LABEL_0"),
                        "probs": logits.tolist(),
                        "num_classes": logits.numel(),
                    }
                )
        return data

    async def _handle(self, request):
        import json

        from aiohttp import web

        if request.method == "GET" and request.path in ("/health", "/v1/models"):
            return web.json_response({"data": [{"id": "tars_hf_reward_model"}]})
        if request.method != "POST" or request.path != "/classify":
            return web.json_response({"error": f"{request.path} is not served (only /classify, /health)"}, status=404)
        payload = await request.json()
        texts = payload.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return web.json_response({"error": "input must be a string or a list of strings"}, status=400)
        data = await asyncio.to_thread(self._classify, texts, bool(payload.get("use_activation", True)))
        with self._count_lock:
            self.counts["requests"] += 1
            self.counts["inputs"] += len(texts)
            if self.request_log:
                with open(self.request_log, "a") as f:
                    f.write(
                        json.dumps(
                            {
                                "path": "/classify",
                                "model": payload.get("model"),
                                "inputs": len(texts),
                                "replica": self.replica_rank,
                            }
                        )
                        + "\n"
                    )
        return web.json_response({"object": "list", "data": data})

    def _serve(self) -> None:
        from aiohttp import web

        loop = asyncio.new_event_loop()
        try:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self._port = site._server.sockets[0].getsockname()[1]
        except BaseException as err:  # noqa: BLE001 - reported by __init__
            self._errors.append(err)
            self._started.set()
            return
        self._loop = loop
        self._started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def close(self) -> None:
        """Stop the HTTP server (the Ray actor's exit does this too)."""
        if getattr(self, "_loop", None) is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def address(self) -> str:
        return f"127.0.0.1:{self._port}"

    def stats(self) -> dict[str, int]:
        return dict(self.counts)

    # verl's RewardModelManager puts the RM to sleep at start and wakes it for each colocated reward step.
    async def wake_up(self, tags: Optional[list[str]] = None):
        self.counts["wake_up"] += 1

    async def sleep(self):
        self.counts["sleep"] += 1


async def _launch_reward_model_server(replica: HFRolloutReplica) -> None:
    """Start the replica's ``HFRewardModelServer`` (verl calls init_colocated / init_standalone for an RM)."""
    server = (
        ray.remote(HFRewardModelServer)
        .options(
            name=f"{ROLLOUT_NAME}_reward_model_{replica.replica_rank}",
            num_cpus=0,
            max_concurrency=replica.max_concurrency,
        )
        .remote(model_config=replica.model_config, replica_rank=replica.replica_rank)
    )
    replica.servers = [server]
    replica._server_handle = server
    replica._server_address = await server.address.remote()  # surfaces a model-loading error here


class HFServerAdapter(BaseRollout):
    """The rollout object in verl's hybrid actor worker: forwards the actor's weights to the server actor."""

    def __init__(self, config, model_config, device_mesh, *args, **kwargs):
        super().__init__(config, model_config, device_mesh, *args, **kwargs)
        size = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.replica_rank, self.is_leader = rank // size, rank % size == 0
        self._server = None

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def update_weights(self, weights, wire_format: str = "named_tensors", **kwargs):
        if wire_format != "named_tensors":
            raise NotImplementedError(f"{ROLLOUT_NAME} rollout takes full named tensors, not {wire_format!r}")
        if kwargs.get("peft_config") is not None:
            raise NotImplementedError(f"{ROLLOUT_NAME} rollout does not load LoRA adapters; set model.lora.merge=True")
        # Every rank iterates: with FSDP each tensor is all-gathered collectively as it is yielded.
        named = {name: tensor.detach().to("cpu", copy=True) for name, tensor in weights}
        if self.is_leader:
            await self._server_handle().update_weights.remote(named, kwargs.get("global_steps"))

    async def resume(self, tags: list[str]):
        pass

    async def release(self):
        pass


RolloutReplicaRegistry.register(ROLLOUT_NAME, lambda: HFRolloutReplica)
register_rollout_adapter(ROLLOUT_NAME, f"{__name__}.HFServerAdapter")
