"""Helpfulness (or any rubric) from an LLM judge behind an OpenAI-compatible chat endpoint.

The judge sees the rubric with ``{prompt}`` and ``{response}`` filled in and must reply with a line
``Score: N`` (N an integer from ``score_min`` to ``score_max``); the score is rescaled to [0, 1].
The verdict is the LAST line that is nothing but ``Score: N`` (markdown emphasis and a ``/ max`` allowed): a
"Score: 10" quoted inside a sentence of the judge's reasoning is not a verdict. N must be a plain integer:
"Score: 1e9", "Score: 1,000" or "Score: 7.5" are errors, not 1 or 7. A reply without a verdict line is an error
naming the endpoint (retry policy applies to HTTP, not to judge replies).

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
# A verdict line: "Score: N" alone on its line (markdown emphasis / heading marks and "/ 10" allowed, no quotes).
VERDICT_LINE_RE = re.compile(r"^[\s*#_>-]*score\s*[:=][\s*_]*(\S+?)(?:\s*/\s*\d+)?[\s*_.]*$", re.IGNORECASE)


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
    """The last ``Score: N`` verdict line of the reply, rescaled to [0, 1]. Raises ValueError when there is none,
    when N is not a plain integer, or when it is out of range.

    >>> parse_judge_score("Fine.\\n**Score: 7**", 1, 10)
    0.6666666666666666
    >>> parse_judge_score('Score: 3\\nA perfect answer would earn "Score: 10".', 1, 10)
    0.2222222222222222
    """
    found = [m.group(1) for m in map(VERDICT_LINE_RE.match, reply.splitlines()) if m]
    if not found:
        raise ValueError(f"no 'Score: N' line in judge reply {reply[-200:]!r}")
    token = found[-1]
    if not re.fullmatch(r"[+-]?\d+", token):
        raise ValueError(f"judge verdict 'Score: {token}' is not an integer in judge reply {reply[-200:]!r}")
    value = int(token)
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
            reply = self.only_choice(body, "/chat/completions")["message"]["content"] or ""
            score = parse_judge_score(reply, cfg.score_min, cfg.score_max)
        return ScoreResult(score, {"judge_raw": score * (cfg.score_max - cfg.score_min) + cfg.score_min})
