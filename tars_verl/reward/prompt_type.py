"""The prompt-type contract: which types exist, where a data row says its type, and the error when it does not.

Every part of the project that writes or reads a row's prompt type uses this module: the ``tars`` reward manager (per
sample), the data-file check of ``--dry-run`` and the SFT entry point, the verl row builder of ``data_prep`` and the
evaluation sets. It imports nothing but the standard library, so the dry run reads it without importing verl.

A row says its type in ``extra_info.prompt_type`` (the key is ``reward.tars.prompt_type_key``), else in a top-level
column of that name, else in ``reward_model.ground_truth``:

>>> resolve_prompt_type({"extra_info": {"prompt_type": "Harmful"}})
'harmful'
>>> resolve_prompt_type({"reward_model": {"ground_truth": "ambiguous"}})
'ambiguous'
>>> resolve_prompt_type({"extra_info": {"prompt_type": "harmfull", "index": 3}})
Traceback (most recent call last):
...
tars_verl.reward.prompt_type.PromptTypeError: row {'data_source': None, 'index': 3, 'uid': None}: \
extra_info.prompt_type='harmfull' is not a prompt type; expected one of ('harmful', 'harmless', 'ambiguous'). \
Fix the value in the data (later fields are not consulted when extra_info.prompt_type is set).
"""

from __future__ import annotations

from typing import Any

PROMPT_TYPES = ("harmful", "harmless", "ambiguous")
# Where a row carries its type: extra_info[PROMPT_TYPE_KEY] (or a column of that name), then the ground truth.
PROMPT_TYPE_KEY = "prompt_type"
GROUND_TRUTH_FIELD = "reward_model.ground_truth"


class PromptTypeError(ValueError):
    """A data row has no usable prompt type."""


def resolve_prompt_type(non_tensor: dict[str, Any], key: str = PROMPT_TYPE_KEY) -> str:
    """The row's prompt type, from ``extra_info[key]``, a top-level ``key`` column, or ``reward_model.ground_truth``.

    The first field that is present decides: a later field is read only when the earlier ones are absent
    (missing, null or empty). A present value that is not a known type (``"harmfull"``) stops the step
    naming the row and the field; it never falls through to another field.
    """
    extra = non_tensor.get("extra_info") or {}
    rm = non_tensor.get("reward_model")
    candidates = [
        (f"extra_info.{key}", extra.get(key) if isinstance(extra, dict) else None),
        (key, non_tensor.get(key)),
        (GROUND_TRUTH_FIELD, rm.get("ground_truth") if isinstance(rm, dict) else None),
    ]
    row = {
        "data_source": non_tensor.get("data_source"),
        "index": extra.get("index") if isinstance(extra, dict) else None,
        "uid": non_tensor.get("uid"),
    }
    for field_name, value in candidates:
        if _absent(value):
            continue
        if isinstance(value, str) and value.strip().lower() in PROMPT_TYPES:
            return value.strip().lower()
        raise PromptTypeError(
            f"row {row}: {field_name}={value!r} is not a prompt type; expected one of {PROMPT_TYPES}. "
            f"Fix the value in the data (later fields are not consulted when {field_name} is set)."
        )
    raise PromptTypeError(
        f"row {row}: no prompt type in extra_info.{key}, '{key}' or {GROUND_TRUTH_FIELD} "
        f"(all absent); expected one of {PROMPT_TYPES}. Build the data with tars_verl's data_prep, "
        f"or add extra_info.{key} to every row."
    )


def check_prompt_type(value: str) -> str:
    """``value`` if it is a prompt type (for code that writes rows); a :class:`PromptTypeError` otherwise."""
    if value not in PROMPT_TYPES:
        raise PromptTypeError(f"{value!r} is not a prompt type; expected one of {PROMPT_TYPES}")
    return value


def _absent(value: Any) -> bool:
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    return isinstance(value, float) and value != value  # NaN: a missing cell in a pandas-written file
