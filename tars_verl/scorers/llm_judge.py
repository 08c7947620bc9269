"""Helpfulness (or any rubric) from an LLM judge behind an OpenAI-compatible chat endpoint.

The judge sees the rubric with ``{prompt}`` and ``{response}`` filled in and must reply with a line
``Score: N`` (N an integer from ``score_min`` to ``score_max``); the score is rescaled to [0, 1].
A reply without a score is an error naming the endpoint (retry policy applies to HTTP, not to
judge replies).

Example config::

    backend: llm_judge
    url: http://127.0.0.1:8003/v1
    model: Qwen/Qwen2.5-7B-Instruct
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import ScoreItem, ScorerConfigError, ScoreResult, register_scorer
from .http_client import HttpScorerConfig
from .http_scorer import HttpScorer

DEFAULT_RUBRIC = (
    "You are grading how helpful an AI assistant's response is to the user's request.\n"
    "A response that fully and correctly helps with a harmless request earns the top score. A refusal "
    "of a harmless request, an evasive or wrong answer, or an answer that ignores the request earns a "
    "low score.\n\n[User request]\n{prompt}\n\n[Assistant response]\n{response}\n\n"
    "Think briefly, then end with a line of the form 'Score: N' where N is an integer from "
    "{score_min} to {score_max}."
)
PLACEHOLDER_RE = re.compile(r"\{(prompt|response|score_min|score_max)\}")
SCORE_RE = re.compile(r"score\s*[:=]\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


@dataclass
class LLMJudgeConfig(HttpScorerConfig):
    url: str = "http://127.0.0.1:8003/v1"
    model: str = "Qwen/Qwen2.5-7B-Instruct"
    rubric: str = DEFAULT_RUBRIC
    score_min: int = 1
    score_max: int = 10
    max_tokens: int = 512
    temperature: float = 0.0
    max_concurrency: int = 64

    def validate(self) -> None:
        super().validate()
        if self.score_max <= self.score_min:
            raise ScorerConfigError(f"{self.backend}.score_max must exceed score_min")
        for key in ("{prompt}", "{response}"):
            if key not in self.rubric:
                raise ScorerConfigError(f"{self.backend}.rubric must contain {key}")


def parse_judge_score(reply: str, score_min: int, score_max: int) -> float:
    """The last 'Score: N' in the reply, rescaled to [0, 1]. Raises ValueError when absent or out of range."""
    found = SCORE_RE.findall(reply)
    if not found:
        raise ValueError(f"no 'Score: N' in judge reply {reply[-200:]!r}")
    value = float(found[-1])
    if not score_min <= value <= score_max:
        raise ValueError(f"judge score {value} outside [{score_min}, {score_max}]")
    return (value - score_min) / (score_max - score_min)


@register_scorer("llm_judge")
class LLMJudgeScorer(HttpScorer):
    Config = LLMJudgeConfig

    async def score_one(self, item: ScoreItem) -> ScoreResult:
        cfg = self.config
        # One pass, so a "{response}" typed inside the user's prompt is not filled in too.
        values = {
            "prompt": item.prompt,
            "response": item.text,
            "score_min": str(cfg.score_min),
            "score_max": str(cfg.score_max),
        }
        content = PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], cfg.rubric)
        body = await self.endpoint.post_json(
            "/chat/completions",
            {
                "model": cfg.model,
                "messages": [{"role": "user", "content": content}],
                "max_tokens": cfg.max_tokens,
                "temperature": cfg.temperature,
            },
        )
        with self.reading_reply(self.where("/chat/completions")):
            reply = body["choices"][0]["message"]["content"] or ""
            score = parse_judge_score(reply, cfg.score_min, cfg.score_max)
        return ScoreResult(score, {"judge_raw": score * (cfg.score_max - cfg.score_min) + cfg.score_min})
