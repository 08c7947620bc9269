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
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from verl import DataProto
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

# Absolute imports: verl may load this file by path (source=importlib), outside its package.
from tars_verl.chat import chat_messages, last_user_text
from tars_verl.redaction import install as install_secret_scrubbing
from tars_verl.reward.batching import MicroBatcher
from tars_verl.reward.config import TarsConfig, tars_config_from
from tars_verl.reward.log_schema import per_type_reward_key, reward_log_keys
from tars_verl.reward.prompt_type import PROMPT_TYPES, PromptTypeError, resolve_prompt_type
from tars_verl.reward.response_format import THINK_OPEN, format_reward, split_reasoning
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
        self.extra_keys = self._extra_keys()
        self._warned_no_raw_prompt = False
        self.calls = 0  # run_single calls, for tests and metrics

    def _extra_keys(self) -> list[str]:
        """The logged keys (tars_verl/reward/log_schema.py), plus each ``weighted`` scorer's components."""
        return reward_log_keys(
            f"{role}/{name}"
            for role, scorer in self.scorers.items()
            if isinstance(scorer, WeightedScorer)
            for name, _, _ in scorer.components
        )

    # -- one sample ---------------------------------------------------------------------------
    def _decode(self, item) -> tuple[str, str, list[dict[str, Any]], int]:
        prompt_ids = item.batch["prompts"]
        response_ids = item.batch["responses"]
        attention = item.batch["attention_mask"]
        n_resp = int(attention[-response_ids.shape[-1] :].sum())
        response = self.tokenizer.decode(response_ids[:n_resp], skip_special_tokens=True)
        # The mask says which prompt tokens are real: the agent loop left-pads prompts, verl's colocated
        # reward batch (trainer_base._compute_reward_colocate) right-pads them.
        valid_prompt = prompt_ids[attention[: prompt_ids.shape[-1]].bool()]
        prompt_tail = self.tokenizer.decode(valid_prompt[-8:], skip_special_tokens=False)
        messages = item.non_tensor_batch.get("raw_prompt")
        if messages is None:
            if not self._warned_no_raw_prompt:
                logger.warning("TARS: batch has no raw_prompt; judging against the decoded prompt text instead")
                self._warned_no_raw_prompt = True
            messages = [{"role": "user", "content": self.tokenizer.decode(valid_prompt, skip_special_tokens=True)}]
        # Content parts become text, a dict or a message without a role is an error naming the row.
        messages = chat_messages(messages, f"TARS reward: {_row_name(item.non_tensor_batch)}: raw_prompt")
        return response, prompt_tail, messages, n_resp

    def _think_prefilled(self, prompt_tail: str) -> bool:
        if self.tars.think_prefilled == "auto":
            return prompt_tail.rstrip().endswith(THINK_OPEN)
        return bool(self.tars.think_prefilled)

    async def run_single(self, data: DataProto) -> dict:
        self.calls += 1
        item = data[-1:][0]  # multi-sequence outputs: the last sequence carries the reward
        try:
            prompt_type = resolve_prompt_type(item.non_tensor_batch, self.tars.prompt_type_key)
        except PromptTypeError as err:
            raise PromptTypeError(f"{err}{_missing_row_hint(item.non_tensor_batch)}") from None
        response, prompt_tail, messages, n_resp = self._decode(item)
        think_prefilled = self._think_prefilled(prompt_tail)
        parts = split_reasoning(response, think_prefilled)
        # A prompt without a user turn would give every judge an empty request: an error naming the row.
        prompt = last_user_text(messages, f"TARS reward: {_row_name(item.non_tensor_batch)}: raw_prompt")
        weights = self.tars.weights()[prompt_type]

        def submit(role: str, text: str):
            return self.batchers[role].submit(ScoreItem(prompt, text, messages, prompt_type))

        jobs: dict[str, Any] = {}
        val_judged = _row_source(item.non_tensor_batch) in self.val_judge_sources
        if val_judged:  # e.g. StrongREJECT-small judged by the StrongREJECT rubric, as the authors validate
            jobs["val_judge"] = submit("val_judge", parts.answer)
        else:
            for role in ("safety", "helpfulness"):
                if weights[role] > 0:
                    jobs[role] = submit(role, parts.answer)
            if self.tars.reasoning_safety and prompt_type == "harmful" and parts.reasoning:
                jobs["reasoning_safety"] = submit("safety", parts.reasoning)
        results: dict[str, ScoreResult] = dict(zip(jobs, await asyncio.gather(*jobs.values())))

        fmt = format_reward(response, think_prefilled)
        if val_judged:
            combined = results["val_judge"].score
        else:
            w_total = sum(weights[r] for r in ("safety", "helpfulness") if r in results)
            combined = sum(weights[r] * results[r].score for r in ("safety", "helpfulness") if r in results) / w_total
        empty = not parts.answer.strip()
        total = 0.0 if (empty and self.tars.empty_answer == "zero") else fmt * combined
        answer_tokens = len(self.tokenizer.encode(parts.answer, add_special_tokens=False)) if parts.answer else 0
        extra: dict[str, Any] = {
            "total": total,
            "format": fmt,
            "safety": results["safety"].score if "safety" in results else None,
            "helpfulness": results["helpfulness"].score if "helpfulness" in results else None,
            "reasoning_safety": results["reasoning_safety"].score if "reasoning_safety" in results else None,
            "prompt_type": prompt_type,
            "refused": float(is_refusal(parts.answer)),
            "reasoning_chars": len(parts.reasoning),
            "answer_chars": len(parts.answer),
            "answer_tokens": answer_tokens,
            "reasoning_tokens": max(n_resp - answer_tokens, 0) if parts.has_close_tag else 0,
            "scorer_fallbacks": sum(bool(r.details.get("fallback")) for r in results.values()),
            "empty_answer": float(empty),
            "val_judged": float(val_judged),
            "strongreject": results["val_judge"].details.get("strongreject") if val_judged else None,
        }
        for t in PROMPT_TYPES:
            extra[per_type_reward_key(t)] = total if t == prompt_type else None
        for role, scorer in self.scorers.items():
            if isinstance(scorer, WeightedScorer):
                comps = results[role].details.get("components", {}) if role in results else {}
                for name, _, _ in scorer.components:
                    extra[f"{role}/{name}"] = comps.get(name)
        if list(extra) != self.extra_keys:  # verl takes the keys of sample 0 for every sample
            raise RuntimeError(
                f"TARS reward log {list(extra)} differs from its schema {self.extra_keys}: "
                "add the key to tars_verl/reward/log_schema.py"
            )
        return {"reward_score": total, "reward_extra_info": extra}


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
