"""One row of verl's RL parquet schema as the ``tars`` reward manager reads it.

The RL mix (``data/rl_mix.py``) and the import of the authors' release (``data/release.py``) both write
this schema; building the row in one place keeps the two files' columns and ``extra_info`` keys (and
their order, which the parquet struct type records) the same.

>>> row = verl_rl_row(
...     source="aegis2", messages=[{"role": "user", "content": "Hi"}], prompt_type="harmful",
...     index=0, source_index=7, category="violence", split="train", think_prefilled=False,
... )
>>> list(row) == VERL_RL_COLUMNS
True
>>> row["reward_model"], list(row["extra_info"])[-2:]
({'style': 'tars', 'ground_truth': 'harmful'}, ['split', 'think_prefilled'])
"""

from __future__ import annotations

from typing import Any

from tars_verl.reward.prompt_type import GROUND_TRUTH_FIELD, PROMPT_TYPE_KEY, check_prompt_type

VERL_RL_COLUMNS = ["data_source", "prompt", "ability", "reward_model", "extra_info"]


def verl_rl_row(
    *,
    source: str,
    messages: list[dict[str, str]],
    prompt_type: str,
    index: int,
    source_index: int,
    category: Any,
    split: str,
    think_prefilled: bool,
    **extra_info: Any,
) -> dict[str, Any]:
    """A verl RL row: ``data_source`` is the source, ``reward_model.ground_truth`` the prompt type;
    ``extra_info`` holds the fixed keys, then ``extra_info`` keywords in the order given."""
    check_prompt_type(prompt_type)
    assert GROUND_TRUTH_FIELD == "reward_model.ground_truth"  # the nesting written below
    return {
        "data_source": source,
        "prompt": messages,
        "ability": "safety",
        "reward_model": {"style": "tars", "ground_truth": prompt_type},
        "extra_info": {
            PROMPT_TYPE_KEY: prompt_type,
            "source": source,
            "index": index,
            "source_index": int(source_index),
            "category": category,
            "split": split,
            "think_prefilled": think_prefilled,
            **extra_info,
        },
    }
