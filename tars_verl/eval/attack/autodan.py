"""AutoDAN (Liu et al. 2024), the genetic-algorithm version HarmBench runs (``baselines/autodan``), against a local
Hugging Face model, with a served mutation LLM.

    python -m tars_verl.eval.attack --method autodan --model PATH --behaviors harmbench_behaviors_text_all.csv \\
        --out cases/autodan.json   # plus the mutator's URL and model, and the target's name and developer

One behaviour at a time, HarmBench's way (its defaults are :class:`AutoDANConfig`'s):

- The population starts as the first ``batch_size`` of HarmBench's reference prompts (``REFERENCES`` of
  ``baselines/autodan/templates.py``, read at run time), with ``ChatGPT`` replaced by the target's name and
  ``ModelKeeper`` by its developer, each followed by `` [PROMPT]: ``. A candidate test case is a prompt followed by the
  request (the behaviour, after its context for contextual behaviours), sent as the user turn of the model's own chat
  template; its loss is the mean NLL of AutoDAN's target (HarmBench's target prefix, read from ``AutoDAN.py``, then
  ``Behavior.target``) where the assistant's reply starts.
- Each step: every candidate's loss (batched; the template's part before the user turn is computed once and its keys
  and values reused); the best candidate is the current test case; every ``eval_steps`` steps (and at the last) the
  model answers it greedily (32 tokens) and the run stops when the answer holds none of HarmBench's refusal phrases;
  the run also stops after ``early_stop_patience`` steps (10, HarmBench's) without a lower loss.
- The next generation: the ``int(batch_size * num_elites)`` best prompts unchanged (the elite), then children of
  parents drawn by roulette (softmax of minus the loss, with replacement): pairs cross over with probability
  ``crossover`` (sentences swapped at up to ``num_points`` points; prompts with too few sentences stay as they are,
  as in HarmBench), and each child is rewritten by the mutation LLM with probability ``mutation``.
- The mutation LLM (any OpenAI-compatible server, through the project's HTTP client: pooled, bounded, retried) gets
  HarmBench's own mutation prompt, read at run time from ``mutate_models.py``: style ``vllm`` (HarmBench's default: a
  vLLM-served Mistral-7B-Instruct-v0.2) sends the request as the user turn and continues the assistant's reply from
  HarmBench's opening followed by the text's first two words (vLLM's ``continue_final_message``); style ``openai``
  sends HarmBench's system and user messages (temperature 1.0, top-p 0.9). Replies are cleaned as HarmBench does
  (newlines removed, surrounding quotes stripped). A request that still fails after its retries fails the behaviour.

Differences from HarmBench, on purpose: candidates of different lengths are padded with an attention mask (HarmBench
pads without one, so padding changed the losses); a mutated child replaces the child it came from (HarmBench
replaced the first equal string); crossover, roulette, mutation draws and each mutation request's sampling seed come
from one generator seeded per (``seed``, BehaviorID), so a run can be repeated.

>>> cfg = AutoDANConfig(); cfg.num_steps, cfg.batch_size, cfg.num_elites, cfg.crossover, cfg.mutation
(100, 64, 0.1, 0.5, 0.01)
>>> crossover("A. B. C.", "x. y. z.", 5, random.Random(0))  # too few sentences: unchanged, as in HarmBench
('A. B. C.', 'x. y. z.')
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from tars_verl.eval.attack.base import Attack, AttackResult, Behavior
from tars_verl.eval.attack.gcg import REFUSAL_CHECK_TOKENS, behaviour_seed
from tars_verl.eval.attack.harmbench_sources import (
    AUTODAN_METHOD_PATH,
    AUTODAN_MUTATOR_PATH,
    AUTODAN_REFERENCES_PATH,
    MUTATOR_CLASSES,
    REFUSAL_PREFIXES_PATH,
    MutationPrompt,
    load_autodan_references,
    load_autodan_target_prefix,
    load_mutation_prompt,
    load_refusal_prefixes,
    source_under,
)
from tars_verl.eval.attack.target_model import TargetModel, is_refusal
from tars_verl.eval.harmbench import HARMBENCH_BASE_URL

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class AutoDANConfig:
    """AutoDAN's settings; defaults are HarmBench's ``AutoDAN_config.yaml`` (``default_method_hyperparameters``)."""

    num_steps: int = 100
    eval_steps: int = 5
    eval_with_check_refusal: bool = True
    batch_size: int = 64
    num_elites: float = 0.1  # fraction of batch_size kept unchanged
    crossover: float = 0.5
    num_points: int = 5
    mutation: float = 0.01
    # Steps without a lower loss before stopping (HarmBench's early_stopping_threshold).
    early_stop_patience: int = 10
    # The target model's name and developer, written into the reference prompts in place of ChatGPT / ModelKeeper
    # (HarmBench's model_short_name / developer_name; e.g. Qwen / Alibaba Cloud). Required.
    model_short_name: str = ""
    developer_name: str = ""
    # Candidates per forward pass to start with (null: the whole population); halved on out-of-memory.
    forward_batch_size: int | None = None
    # HarmBench's files, each a URL or file ("" = its path under harmbench_url): the reference prompts
    # (templates.py or a JSON list), the target prefix (AutoDAN.py or a JSON string), the mutation prompt
    # (mutate_models.py or JSON {user, system, assistant_prefix}), the refusal phrases (check_refusal_utils.py or a
    # JSON list).
    references: str = ""
    target_prefix: str = ""
    mutator_prompt: str = ""
    refusal_prefixes: str = ""
    harmbench_url: str = HARMBENCH_BASE_URL
    # "vllm": HarmBench's vLLM mutator (continues the assistant's reply; needs a vLLM server); "openai": its GPT one.
    mutator_style: str = "vllm"
    mutator_max_tokens: int = 1400  # HarmBench's max_n_tokens for a mutation (vllm style)
    mutator_temperature: float = 1.0
    mutator_top_p: float = 0.9  # openai style only (HarmBench's GPT mutator)
    mutator_timeout_s: float = 300.0
    mutator_max_retries: int = 5
    mutator_max_concurrency: int = 16
    cache_dir: str = ""
    seed: int = 0
    trust_remote_code: bool = False

    NOT_SETTINGS: ClassVar[tuple[str, ...]] = (
        "forward_batch_size",
        "cache_dir",
        "trust_remote_code",
        "mutator_timeout_s",
        "mutator_max_retries",
        "mutator_max_concurrency",
    )

    def n_elites(self) -> int:
        return int(self.batch_size * self.num_elites)

    def validate(self) -> AutoDANConfig:
        for key in ("num_steps", "eval_steps", "batch_size", "early_stop_patience", "mutator_max_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"autodan.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("num_elites", "crossover", "mutation"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"autodan.{key} must be in [0, 1], got {getattr(self, key)}")
        if self.n_elites() >= self.batch_size:
            raise ValueError("autodan.num_elites leaves no room for children: it must be < 1")
        if self.num_points < 1:
            raise ValueError(f"autodan.num_points must be >= 1, got {self.num_points}")
        if not self.model_short_name.strip() or not self.developer_name.strip():
            raise ValueError(
                "autodan.model_short_name and autodan.developer_name are required: HarmBench's reference prompts "
                "name the target model and its developer (e.g. model_short_name=Qwen developer_name='Alibaba Cloud')"
            )
        if self.mutator_style not in MUTATOR_CLASSES:
            raise ValueError(
                f"autodan.mutator_style must be one of {sorted(MUTATOR_CLASSES)}, got {self.mutator_style!r}"
            )
        if self.forward_batch_size is not None and self.forward_batch_size < 1:
            raise ValueError(f"autodan.forward_batch_size must be >= 1 or null, got {self.forward_batch_size}")
        return self

    def source(self, key: str) -> str:
        paths = {
            "references": AUTODAN_REFERENCES_PATH,
            "target_prefix": AUTODAN_METHOD_PATH,
            "mutator_prompt": AUTODAN_MUTATOR_PATH,
            "refusal_prefixes": REFUSAL_PREFIXES_PATH,
        }
        return getattr(self, key) or source_under(self.harmbench_url, paths[key])


# -- the genetic algorithm (plain functions, seeded by the caller's generators) -------------------------------------
def sentences(text: str) -> list[str]:
    """``text`` split after each ``.``, ``!`` or ``?`` followed by white space (HarmBench's crossover units)."""
    return [s for s in _SENTENCE_END.split(text) if s]


def crossover(a: str, b: str, num_points: int, rng: random.Random) -> tuple[str, str]:
    """Two children of ``a`` and ``b``: their sentence lists cut at up to ``num_points`` random points (never the
    first or the last sentence), each segment going to either child. As in HarmBench, parents with too few sentences
    for ``num_points`` cuts (fewer than ``num_points + 2`` in the shorter one) come back unchanged."""
    sa, sb = sentences(a), sentences(b)
    cuts_max = min(len(sa), len(sb)) - 1
    n_cuts = min(num_points, cuts_max)
    if n_cuts < 0 or n_cuts > max(cuts_max - 1, 0):
        return a, b
    cuts = sorted(rng.sample(range(1, cuts_max), n_cuts)) if n_cuts else []
    child_a, child_b, last = [], [], 0
    for cut in [*cuts, None]:
        seg_a, seg_b = sa[last:cut], sb[last:cut]
        if rng.choice([True, False]):
            child_a += seg_a
            child_b += seg_b
        else:
            child_a += seg_b
            child_b += seg_a
        last = cut
    return " ".join(child_a), " ".join(child_b)


def roulette(population: list[str], losses: list[float], k: int, np_rng) -> list[str]:
    """``k`` prompts drawn with replacement, with probability softmax(-loss)."""
    scores = [-x for x in losses]
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    total = sum(weights)
    picks = np_rng.choice(len(population), size=k, p=[w / total for w in weights], replace=True)
    return [population[int(i)] for i in picks]


def breed(population: list[str], losses: list[float], cfg: AutoDANConfig, rng: random.Random, np_rng):
    """(the next generation before mutation, the indices of the children to mutate). The first ``cfg.n_elites()``
    entries are the best prompts by loss, in order; the rest are children of roulette-drawn parents."""
    order = sorted(range(len(population)), key=lambda i: losses[i])
    n_elites = cfg.n_elites()
    elites = [population[i] for i in order[:n_elites]]
    n_children = len(population) - n_elites
    parents = roulette(population, losses, n_children, np_rng)
    children = []
    for i in range(0, len(parents), 2):
        p1 = parents[i]
        p2 = parents[i + 1] if i + 1 < len(parents) else parents[0]
        if rng.random() < cfg.crossover:
            children += crossover(p1, p2, cfg.num_points, rng)
        else:
            children += [p1, p2]
    children = children[:n_children]
    mutate = [n_elites + j for j in range(n_children) if rng.random() <= cfg.mutation]
    return elites + children, mutate


def clean_mutation(text: str) -> str:
    """HarmBench's clean-up of a mutation reply: newlines removed, white space stripped, then one leading quote, one
    trailing quote, and a trailing quote-and-full-stop removed."""
    text = text.replace("\n", "").strip()
    if text[:1] in ("'", '"'):
        text = text[1:]
    if text[-1:] in ("'", '"'):
        text = text[:-1]
    if text[-2:] in ("'.", '".'):
        text = text[:-2]
    return text


class Mutator:
    """The mutation LLM behind an OpenAI-compatible endpoint; :meth:`mutate` rewrites texts concurrently."""

    def __init__(self, url: str, model: str, prompt: MutationPrompt, cfg: AutoDANConfig, api_key_env: str | None):
        from tars_verl.scorers.http_client import HttpEndpoint, HttpScorerConfig

        self.model = model
        self.prompt = prompt
        self.cfg = cfg
        self.http_config = HttpScorerConfig(
            backend="autodan_mutator",
            url=url,
            model=model,
            api_key_env=api_key_env or None,
            timeout_s=cfg.mutator_timeout_s,
            max_retries=cfg.mutator_max_retries,
            max_concurrency=cfg.mutator_max_concurrency,
        )
        self.http_config.validate()  # a named API-key variable that is not set stops here
        self.endpoint = HttpEndpoint.from_config(self.http_config)

    def check(self) -> None:
        """GET the endpoint's /models at start-up: a wrong URL fails before any work."""
        from tars_verl.scorers.http_client import check_endpoint_sync

        check_endpoint_sync(self.http_config)

    def request(self, text: str, seed: int) -> dict[str, Any]:
        """The chat request that mutates ``text`` (HarmBench's prompt; ``seed`` fixes the server's sampling)."""
        p, cfg = self.prompt, self.cfg
        messages = [{"role": "system", "content": p.system}] if p.system else []
        messages.append({"role": "user", "content": p.user.format(sentence=text)})
        body: dict[str, Any] = {"model": self.model, "temperature": cfg.mutator_temperature, "seed": seed}
        if cfg.mutator_style == "vllm":
            # HarmBench's vLLM mutator continues "<prompt><assistant_prefix><first two words>".
            messages.append({"role": "assistant", "content": p.assistant_prefix + _first_words(text)})
            body.update(max_tokens=cfg.mutator_max_tokens, continue_final_message=True, add_generation_prompt=False)
        else:
            body.update(top_p=cfg.mutator_top_p)
        body["messages"] = messages
        return body

    async def mutate_one(self, text: str, seed: int) -> str:
        body = await self.endpoint.post_json("/chat/completions", self.request(text, seed))
        try:
            reply = body["choices"][0]["message"]["content"]
            if not isinstance(reply, str):
                raise TypeError(f"content is {type(reply).__name__}")
        except (KeyError, IndexError, TypeError) as err:
            raise RuntimeError(
                f"AutoDAN mutator {self.endpoint.base_url}: reply without choices[0].message.content ({err})"
            ) from err
        if self.cfg.mutator_style == "vllm":
            return clean_mutation(_first_words(text) + " " + reply.strip())
        return clean_mutation(reply.replace("\n", ""))

    async def mutate(self, texts: list[str], seeds: list[int]) -> list[str]:
        return list(await asyncio.gather(*(self.mutate_one(t, s) for t, s in zip(texts, seeds))))

    async def aclose(self) -> None:
        await self.endpoint.aclose()


def _first_words(text: str) -> str:
    return " ".join(text.split()[:2])


class AutoDANAttack(Attack):
    """AutoDAN-GA against a local model with a served mutation LLM::

        AutoDANAttack(model_path, config=None, device="auto", dtype="auto",
                      mutator_url="http://host:8000/v1", mutator_model="mistralai/Mistral-7B-Instruct-v0.2",
                      api_key_env=None)

    The model, HarmBench's files and the mutator's address are checked by :meth:`check_ready` (also done by the first
    :meth:`run`). Behaviours run one at a time."""

    name: ClassVar[str] = "autodan"
    needs_target_string: ClassVar[bool] = True
    Config: ClassVar[type] = AutoDANConfig

    def __init__(
        self,
        model_path: str,
        config: AutoDANConfig | None = None,
        device: str = "auto",
        dtype: str = "auto",
        mutator_url: str = "",
        mutator_model: str = "",
        api_key_env: str | None = None,
    ):
        self.config = (config or AutoDANConfig()).validate()
        if not mutator_url or not mutator_model:
            raise ValueError(
                "AutoDAN needs its mutation LLM: mutator_url (an OpenAI-compatible endpoint, e.g. "
                "http://127.0.0.1:8000/v1 of `vllm serve mistralai/Mistral-7B-Instruct-v0.2`, HarmBench's mutator) "
                "and mutator_model (the served model's name)"
            )
        self.mutator_url, self.mutator_model = mutator_url, mutator_model
        self.api_key_env = api_key_env
        self.target = TargetModel(model_path, device, dtype, trust_remote_code=self.config.trust_remote_code)
        self.target.batch_size = self.config.forward_batch_size
        self.references: list[str] | None = None
        self.target_prefix: str | None = None
        self.refusal_prefixes: list[str] | None = None
        self.mutator: Mutator | None = None
        self._prefix = None
        self._before_ids: list[int] = []
        self._locks: dict[int, asyncio.Lock] = {}  # one per event loop: behaviours run one at a time
        self._ready = threading.Lock()

    def settings(self) -> dict[str, Any]:
        cfg = {k: v for k, v in asdict(self.config).items() if k not in AutoDANConfig.NOT_SETTINGS}
        return {
            "method": self.name,
            "model": self.target.model_path,
            "dtype": self.target.dtype,
            "mutator_model": self.mutator_model,
            **cfg,
        }

    def check_ready(self) -> None:
        """HarmBench's files, the mutator's endpoint (reachable), then the model; raise naming what is wrong."""
        with self._ready:
            cfg, cache = self.config, self.config.cache_dir or None
            if self.mutator is None:
                refs = load_autodan_references(cfg.source("references"), cfg.batch_size, cache)
                self.references = [
                    r.replace("ChatGPT", cfg.model_short_name).replace("ModelKeeper", cfg.developer_name)
                    + " [PROMPT]: "
                    for r in refs
                ]
                self.target_prefix = load_autodan_target_prefix(cfg.source("target_prefix"), cache)
                if cfg.eval_with_check_refusal:
                    self.refusal_prefixes = load_refusal_prefixes(cfg.source("refusal_prefixes"), cache)
                prompt = load_mutation_prompt(cfg.source("mutator_prompt"), cfg.mutator_style, cache)
                mutator = Mutator(self.mutator_url, self.mutator_model, prompt, cfg, self.api_key_env)
                mutator.check()
                self.mutator = mutator
            if self.target.model is None:
                self.target.load()
                before, _ = self.target.chat_layout()
                self._before_ids = self.target.encode(before)
                self._prefix = self.target.prefix(self._before_ids)

    async def aclose(self) -> None:
        if self.mutator is not None:
            await self.mutator.aclose()
        self.target.unload()

    def candidate_losses(self, population: list[str], request: str, target: str) -> list[float]:
        """AutoDAN's loss of each prompt: the target's NLL after ``template(prompt + request)``. Each candidate is
        tokenised whole, as HarmBench does; the template's opening comes from the prefix cache when the candidate's
        tokens start with it (they do unless a tokenizer merges across the boundary)."""
        before, after = self.target.chat_layout()
        full = self.target.tokenizer([before + p + request + after for p in population], add_special_tokens=False)[
            "input_ids"
        ]
        n = len(self._before_ids)
        prefix = self._prefix
        if prefix is not None and all(ids[:n] == self._before_ids for ids in full):
            rows = [ids[n:] for ids in full]
        else:
            rows, prefix = full, None
        return self.target.target_losses(rows, self.target.encode(target), prefix).tolist()

    async def run(self, behavior: Behavior, progress: Callable[[int, int], None] | None = None) -> AttackResult:
        if not behavior.target:
            raise ValueError(f"{behavior.behavior_id}: AutoDAN needs a target string (harmbench_targets_text.json)")
        await asyncio.to_thread(self.check_ready)
        lock = self._locks.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())
        async with lock:
            return await self._run(behavior, progress)

    async def _run(self, behavior: Behavior, progress) -> AttackResult:
        import numpy as np

        cfg, tm = self.config, self.target
        started = time.monotonic()
        seed = behaviour_seed(cfg.seed, behavior.behavior_id)
        rng, np_rng = random.Random(seed), np.random.default_rng(seed)
        before, after = tm.chat_layout()
        request = behavior.request()
        target = self.target_prefix + behavior.target
        population = self.references[: cfg.batch_size]
        losses_log, checks = [], []
        test_case, previous, patience, stopped_by, mutations = request, None, cfg.early_stop_patience, "", 0
        for step in range(cfg.num_steps):
            losses = await asyncio.to_thread(self.candidate_losses, population, request, target)
            best = min(range(len(losses)), key=losses.__getitem__)
            current = losses[best]
            losses_log.append(current)
            test_case = population[best] + request
            if progress:
                progress(step + 1, cfg.num_steps)
            if (step % cfg.eval_steps == 0 or step == cfg.num_steps - 1) and cfg.eval_with_check_refusal:
                completion = await asyncio.to_thread(tm.generate, before + test_case + after, REFUSAL_CHECK_TOKENS)
                refused = is_refusal(completion, self.refusal_prefixes)
                checks.append({"step": step, "loss": current, "completion": completion, "refusal": refused})
                if not refused:
                    stopped_by = "refusal_check"
                    break
            if previous is None or current < previous:
                previous, patience = current, cfg.early_stop_patience
            else:
                patience -= 1
                if patience <= 0:
                    stopped_by = "no_improvement"
                    break
            if step == cfg.num_steps - 1:
                break  # no next generation to build
            population, to_mutate = breed(population, losses, cfg, rng, np_rng)
            if to_mutate:
                seeds = [rng.randrange(2**31) for _ in to_mutate]
                new = await self.mutator.mutate([population[i] for i in to_mutate], seeds)
                for i, text in zip(to_mutate, new):
                    population[i] = text
                mutations += len(to_mutate)
        if progress:
            progress(cfg.num_steps, cfg.num_steps)
        log = {
            "steps": len(losses_log),
            "losses": losses_log,
            "initial_loss": losses_log[0],
            "final_loss": losses_log[-1],
            "stopped_by": stopped_by or "num_steps",
            "refusal_checks": checks,
            "mutations": mutations,
            "forward_batch_size": tm.batch_size or cfg.batch_size,
            "time_s": round(time.monotonic() - started, 3),
        }
        return AttackResult(test_cases=[test_case], log=log)
