"""Build the ``DataProto`` that verl's reward loop hands a reward manager (TESTING / demo helper).

Mirrors verl 0.9's agent loop: left-padded ``prompts``, right-padded ``responses``, one
``attention_mask`` over both, ``input_ids`` / ``position_ids``, and the data row's fields
(``raw_prompt``, ``data_source``, ``reward_model``, ``extra_info``, ``uid``) as non-tensor columns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Sample:
    messages: list[dict[str, str]]
    response: str
    prompt_type: str | None = "harmless"
    data_source: str = "tars/demo"
    extra_info: dict[str, Any] = field(default_factory=dict)
    prefill_think: bool = False
    # The data row's ``raw_prompt`` when it differs from ``messages`` (content parts, a malformed row); the prompt
    # tokens always come from ``messages``.
    raw_prompt: Any = None


def make_reward_batch(tokenizer, samples: list[Sample], response_length: int | None = None):
    from verl import DataProto

    prompt_ids, response_ids = [], []
    for s in samples:
        text = tokenizer.apply_chat_template(s.messages, tokenize=False, add_generation_prompt=True)
        if s.prefill_think:
            text += "<think>\n"
        prompt_ids.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids = tokenizer(s.response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        response_ids.append(ids[:response_length] if response_length else ids)
    p_len = max(len(p) for p in prompt_ids)
    r_len = response_length or max(len(r) for r in response_ids)
    pad = tokenizer.pad_token_id
    prompts = torch.full((len(samples), p_len), pad, dtype=torch.long)
    responses = torch.full((len(samples), r_len), pad, dtype=torch.long)
    attention = torch.zeros((len(samples), p_len + r_len), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        prompts[i, p_len - len(p) :] = torch.tensor(p)
        responses[i, : len(r)] = torch.tensor(r)
        attention[i, p_len - len(p) : p_len + len(r)] = 1
    input_ids = torch.cat([prompts, responses], dim=1)
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    extra_infos = []
    for i, s in enumerate(samples):
        info = {"index": i, "source": s.data_source, **s.extra_info}
        if s.prompt_type is not None:
            info["prompt_type"] = s.prompt_type
        extra_infos.append(info)
    non_tensor = {
        "raw_prompt": np.array(
            [s.messages if s.raw_prompt is None else s.raw_prompt for s in samples] + [None], dtype=object
        )[:-1],
        "data_source": np.array([s.data_source for s in samples], dtype=object),
        "reward_model": np.array([{"style": "tars", "ground_truth": ""} for _ in samples], dtype=object),
        "extra_info": np.array(extra_infos, dtype=object),
        "uid": np.array([str(uuid.uuid4()) for _ in samples], dtype=object),
    }
    return DataProto.from_dict(
        tensors={
            "prompts": prompts,
            "responses": responses,
            "attention_mask": attention,
            "input_ids": input_ids,
            "position_ids": position_ids,
        },
        non_tensors=non_tensor,
    )
