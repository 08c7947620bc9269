"""Helpfulness from an in-process reward model (the paper's GRM-llama3-8B-distill): sigmoid(logit).

The conversation [prompt turns, assistant answer] goes through the reward model's OWN tokenizer and
chat template (it differs from the policy's); the reasoning is stripped before it gets here.

Example config::

    backend: hf_reward_model
    model_path: Ray2333/GRM-llama3-8B-distill
    max_length: 4096
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import ScoreItem, Scorer, ScoreResult, register_scorer
from .hf_sequence_classifier import HFModelConfig, HFSequenceClassifier


@dataclass
class HFRewardModelConfig(HFModelConfig):
    max_length: int = 4096
    # score = sigmoid(logit_scale * logit + logit_offset); the paper uses plain sigmoid.
    logit_scale: float = 1.0
    logit_offset: float = 0.0


def rm_conversation_text(tokenizer, item: ScoreItem) -> str:
    """The RM's own chat template over the conversation, without a leading BOS (the tokenizer adds it)."""
    text = tokenizer.apply_chat_template(item.chat(), tokenize=False, add_generation_prompt=False)
    if tokenizer.bos_token and text.startswith(tokenizer.bos_token):
        text = text[len(tokenizer.bos_token) :]
    return text


@register_scorer("hf_reward_model")
class HFRewardModelScorer(Scorer):
    Config = HFRewardModelConfig

    def __init__(self, config: HFRewardModelConfig, **context):
        super().__init__(config)
        self.rm = HFSequenceClassifier(config)

    async def score_batch(self, items: list[ScoreItem]) -> list[ScoreResult]:
        texts = [rm_conversation_text(self.rm.tokenizer, it) for it in items]
        logits, truncated = await self.rm.logits(texts)
        raw = logits[:, 0]
        scores = torch.sigmoid(self.config.logit_scale * raw + self.config.logit_offset)
        return [
            ScoreResult(float(s), {"logit": float(r), "truncated": t})
            for s, r, t in zip(scores.tolist(), raw.tolist(), truncated)
        ]
