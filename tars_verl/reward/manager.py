"""TarsRewardManager: the TARS decoupled reward as a verl reward-loop reward manager.

Per response: total = format * (w_s * safety + w_h * helpfulness) / (w_s + w_h), with the weights
chosen by the prompt type (harmful / harmless / ambiguous) read from the data row. In the paper's
``decoupled`` mode, harmful prompts get the safety score of the answer and harmless / ambiguous
prompts get the helpfulness score of the answer (reasoning stripped).

Use it from verl by registered name (the ``verl.plugins`` entry point registers ``tars`` on
``import verl``)::

    reward.reward_manager.name=tars

or without registration, by file::

    reward.reward_manager.source=importlib \\
    reward.reward_manager.module.path=pkg://tars_verl.reward.manager \\
    reward.reward_manager.name=TarsRewardManager

Its settings are ``reward.tars`` (see ``tars_verl/config/README.md``).

``aclose()`` closes the scorers' connections and stops their micro-batchers (benchmarks and tests call it; in a verl
run, which has no shutdown hook for reward managers, the HTTP sessions are closed at exit by
:class:`~tars_verl.scorers.http_client.HttpEndpoint` itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable
from typing import Any, NamedTuple

import numpy as np
from verl import DataProto
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

# Absolute imports: verl may load this file by path (source=importlib), outside its package.
from tars_verl.chat import chat_messages, last_user_text
from tars_verl.redaction import install as install_secret_scrubbing
from tars_verl.reward.batching import MicroBatcher
from tars_verl.reward.config import TarsConfig, tars_config_from
from tars_verl.reward.log_schema import per_type_reward_key, reward_log_keys
from tars_verl.reward.prompt_type import PromptTypeError, resolve_prompt_type
from tars_verl.reward.response_format import THINK_OPEN, ResponseParts, format_reward, split_reasoning
from tars_verl.scorers import ScoreItem, Scorer, ScoreResult, build_scorer
from tars_verl.scorers.refusal_keywords import is_refusal
from tars_verl.scorers.weighted import WeightedScorer
from tars_verl.verl_workarounds import check_served_rm_routing, verl_rm_backend

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("TARS_LOGGING_LEVEL", "INFO"))


def _row_source(non_tensor: dict[str, Any]) -> str | None:
    """The row's data source: ``data_source``, else ``extra_info.source``."""
    source = non_tensor.get("data_source")
    if not source:
        extra = non_tensor.get("extra_info")
        source = extra.get("source") if isinstance(extra, dict) else None
    return str(source) if source else None


def _row_name(non_tensor: dict[str, Any]) -> str:
    """How messages name a data row: its ``extra_info.index`` and source."""
    extra = non_tensor.get("extra_info")
    index = extra.get("index") if isinstance(extra, dict) else None
    source = _row_source(non_tensor) or "unknown source"
    return f"data row {index} ({source})" if index is not None else f"a data row without extra_info.index ({source})"


def _row_fields(non_tensor: dict[str, Any]) -> dict[str, Any]:
    """The data row's fields as plain Python values (numpy scalars unwrapped), for scorers that read them."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in non_tensor.items()}


class _Sample(NamedTuple):
    """One response as read from verl's batch: what the scorers judge and what the log row reports.

    A NamedTuple, not a dataclass: verl may execute this file under a module name missing from ``sys.modules``
    (``source=importlib``), where ``@dataclass`` fails.
    """

    prompt_type: str
    prompt: str
    messages: list[dict[str, Any]]
    row: dict[str, Any]
    parts: ResponseParts
    format: float
    refused: bool
    response_tokens: int
    answer_tokens: int
    val_judged: bool

    @property
    def empty_answer(self) -> bool:
        return not self.parts.answer.strip()


class TarsRewardManager(RewardManagerBase):
    """verl calls ``run_single`` once per sample, concurrently; scorer calls are coalesced into batches."""

    def __init__(
        self, config, tokenizer, compute_score=None, reward_router_address=None, reward_model_tokenizer=None, **kwargs
    ):
        super().__init__(config, tokenizer, compute_score)
        # Log records and tracebacks of this reward worker never show a scorer's key or URL password.
        install_secret_scrubbing(streams=False)
        reward_cfg = config.get("reward", config)
        self.tars: TarsConfig = tars_config_from(reward_cfg.get("tars"))
        check_served_rm_routing(reward_cfg)  # workaround served_rm_routing
        context = {
            "reward_router_address": reward_router_address,
            "reward_model_tokenizer": reward_model_tokenizer,
            "reward_model_backend": verl_rm_backend(reward_cfg),
        }
        self.scorers: dict[str, Scorer] = {}
        self.batchers: dict[str, MicroBatcher] = {}
        roles = [r for r in ("safety", "helpfulness") if self.tars.needs(r)]
        if self.tars.val_judge and self.tars.val_judge_sources:
            roles.append("val_judge")
        for role in roles:
            scorer = build_scorer(getattr(self.tars, role), where=f"reward.tars.{role}", **context)
            self.scorers[role] = scorer
            self.batchers[role] = MicroBatcher(scorer.score, scorer.config.max_batch_size, scorer.config.max_wait_ms)
        self.val_judge_sources = set(self.tars.val_judge_sources) if "val_judge" in self.scorers else set()
        if self.tars.check_on_start:
            for scorer in self.scorers.values():
                scorer.check_ready()
        # Each ``weighted`` scorer's components, logged as <role>/<name>.
        self.components = [
            (role, name)
            for role, scorer in self.scorers.items()
            if isinstance(scorer, WeightedScorer)
            for name, _, _ in scorer.components
        ]
        self.extra_keys = reward_log_keys(f"{role}/{name}" for role, name in self.components)
        self._warned_no_raw_prompt = False
        self.calls = 0  # run_single calls, for tests and metrics

    async def run_single(self, data: DataProto) -> dict:
        self.calls += 1
        item = data[-1:][0]  # multi-sequence outputs: the last sequence carries the reward
        # Tokenizer work off the event loop (as verl's own managers do): the loop keeps serving scorer replies.
        sample = await asyncio.get_running_loop().run_in_executor(None, self._read_sample, item)
        jobs = self._submit_jobs(sample)
        results: dict[str, ScoreResult] = dict(zip(jobs, await asyncio.gather(*jobs.values())))
        total = self._combine(sample, results)
        return {"reward_score": total, "reward_extra_info": self._log_row(sample, results, total)}

    async def aclose(self) -> None:
        """Stop the micro-batchers (anything still parked is cancelled), then close every scorer's connections."""
        for batcher in self.batchers.values():
            await batcher.aclose()
        for scorer in self.scorers.values():
            await scorer.aclose()

    # -- the steps of run_single ---------------------------------------------------------------
    def _read_sample(self, item) -> _Sample:
        """Decode the response, split off the reasoning, count tokens: everything that needs the tokenizer."""
        try:
            prompt_type = resolve_prompt_type(item.non_tensor_batch, self.tars.prompt_type_key)
        except PromptTypeError as err:
            raise PromptTypeError(f"{err}{_missing_row_hint(item.non_tensor_batch)}") from None
        prompt_ids = item.batch["prompts"]
        response_ids = item.batch["responses"]
        attention = item.batch["attention_mask"]
        n_resp = int(attention[-response_ids.shape[-1] :].sum())
        response = self.tokenizer.decode(response_ids[:n_resp], skip_special_tokens=True)
        # The mask says which prompt tokens are real: the agent loop left-pads prompts, verl's colocated
        # reward batch (trainer_base._compute_reward_colocate) right-pads them.
        valid_prompt = prompt_ids[attention[: prompt_ids.shape[-1]].bool()]
        think_prefilled = self.tars.think_prefilled
        if think_prefilled == "auto":
            prompt_tail = self.tokenizer.decode(valid_prompt[-8:], skip_special_tokens=False)
            think_prefilled = prompt_tail.rstrip().endswith(THINK_OPEN)
        messages = item.non_tensor_batch.get("raw_prompt")
        if messages is None:
            if not self._warned_no_raw_prompt:
                logger.warning("TARS: batch has no raw_prompt; judging against the decoded prompt text instead")
                self._warned_no_raw_prompt = True
            messages = [{"role": "user", "content": self.tokenizer.decode(valid_prompt, skip_special_tokens=True)}]
        # Content parts become text, a dict or a message without a role is an error naming the row.
        messages = chat_messages(messages, f"TARS reward: {_row_name(item.non_tensor_batch)}: raw_prompt")
        parts = split_reasoning(response, bool(think_prefilled))
        answer_tokens = len(self.tokenizer.encode(parts.answer, add_special_tokens=False)) if parts.answer else 0
        return _Sample(
            prompt_type=prompt_type,
            # A prompt without a user turn would give every judge an empty request: an error naming the row.
            prompt=last_user_text(messages, f"TARS reward: {_row_name(item.non_tensor_batch)}: raw_prompt"),
            messages=messages,
            row=_row_fields(item.non_tensor_batch),
            parts=parts,
            format=format_reward(response, bool(think_prefilled)),
            refused=is_refusal(parts.answer),
            response_tokens=n_resp,
            answer_tokens=answer_tokens,
            val_judged=_row_source(item.non_tensor_batch) in self.val_judge_sources,
        )

    def _submit_jobs(self, s: _Sample) -> dict[str, Awaitable[ScoreResult]]:
        """One scorer call per role the prompt type needs, each parked in that scorer's micro-batcher."""

        def submit(role: str, text: str) -> Awaitable[ScoreResult]:
            return self.batchers[role].submit(ScoreItem(s.prompt, text, s.messages, s.prompt_type, row=s.row))

        if s.val_judged:  # e.g. StrongREJECT-small judged by the StrongREJECT rubric, as the authors validate
            return {"val_judge": submit("val_judge", s.parts.answer)}
        weights = self.tars.weights()[s.prompt_type]
        jobs = {role: submit(role, s.parts.answer) for role in ("safety", "helpfulness") if weights[role] > 0}
        if self._scores_reasoning(s):
            jobs["reasoning_safety"] = submit("safety", s.parts.reasoning)  # logged, never rewarded
        return jobs

    def _scores_reasoning(self, s: _Sample) -> bool:
        """Whether this harmful response's reasoning is scored: a ``reasoning_safety_fraction`` of them, chosen by a
        hash of the prompt and the response (the same ones on a rerun, spread over a prompt's rollouts)."""
        if not (self.tars.reasoning_safety and s.prompt_type == "harmful" and s.parts.reasoning):
            return False
        fraction = self.tars.reasoning_safety_fraction
        if fraction >= 1.0:
            return True
        return reasoning_sample_point(s.prompt, s.parts.reasoning, s.parts.answer) < fraction

    def _combine(self, s: _Sample, results: dict[str, ScoreResult]) -> float:
        """total = format * (w_s * safety + w_h * helpfulness) / (w_s + w_h), or format * the val judge's score."""
        if s.empty_answer and self.tars.empty_answer == "zero":
            return 0.0
        if s.val_judged:
            return s.format * results["val_judge"].score
        weights = self.tars.weights()[s.prompt_type]
        roles = [r for r in ("safety", "helpfulness") if r in results]
        return s.format * sum(weights[r] * results[r].score for r in roles) / sum(weights[r] for r in roles)

    def _log_row(self, s: _Sample, results: dict[str, ScoreResult], total: float) -> dict[str, Any]:
        """``reward_extra_info``: every key of the schema (tars_verl/reward/log_schema.py), None where it does not
        apply; verl takes the key list of sample 0 for every sample."""
        row: dict[str, Any] = dict.fromkeys(self.extra_keys)
        score = {role: r.score for role, r in results.items()}
        row.update(
            total=total,
            format=s.format,
            safety=score.get("safety"),
            helpfulness=score.get("helpfulness"),
            reasoning_safety=score.get("reasoning_safety"),
            prompt_type=s.prompt_type,
            refused=float(s.refused),
            reasoning_chars=len(s.parts.reasoning),
            answer_chars=len(s.parts.answer),
            answer_tokens=s.answer_tokens,
            reasoning_tokens=max(s.response_tokens - s.answer_tokens, 0) if s.parts.has_close_tag else 0,
            scorer_fallbacks=sum(bool(r.details.get("fallback")) for r in results.values()),
            empty_answer=float(s.empty_answer),
            val_judged=float(s.val_judged),
            strongreject=results["val_judge"].details.get("strongreject") if s.val_judged else None,
        )
        row[per_type_reward_key(s.prompt_type)] = total
        for role, name in self.components:
            if role in results:
                row[f"{role}/{name}"] = results[role].details.get("components", {}).get(name)
        return row


def reasoning_sample_point(prompt: str, reasoning: str, answer: str) -> float:
    """A number in [0, 1) fixed by the response's text (BLAKE2b, the same in every process and run): the responses
    whose number is below ``reasoning_safety_fraction`` get their reasoning scored.

    >>> 0 <= reasoning_sample_point("How do I pick a lock?", "It is illegal.", "I can't help.") < 1
    True
    """
    digest = hashlib.blake2b("\x00".join((prompt, reasoning, answer)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _missing_row_hint(non_tensor: dict[str, Any]) -> str:
    """verl's colocated reward batch (served RM on the actor's GPUs) carries no data-row fields at all."""
    if any(k in non_tensor for k in ("extra_info", "reward_model", "data_source")):
        return ""
    return (
        " This batch has no data-row fields: verl's colocated reward model path leaves them out. Use "
        "trainer.v1.trainer_mode=tars (tars_verl/training/trainer.py adds them) or "
        "reward.reward_model.enable_resource_pool=True."
    )


if __name__ != "tars_verl.reward.manager":  # workaround file_loaded_reward_manager (tars_verl/verl_workarounds.py)
    # Loaded by verl from a file path (importlib, under a hashed module name): hand out the one class
    # from the installed package so that registration and isinstance checks see a single type.
    from tars_verl.reward.manager import TarsRewardManager  # noqa: F811,E402
else:
    from verl.experimental.reward_loop.reward_manager.registry import REWARD_MANAGER, register

    if "tars" not in REWARD_MANAGER:
        register("tars")(TarsRewardManager)
