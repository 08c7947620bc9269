"""An lm-eval-harness model that scores every model's *answer*, whether it reasons first or not.

A model that writes ``<think> ...</think>`` before answering is cut off by lm-eval's task settings: the
default 256-token generation cap (GSM8K, MATH-500, GPQA) and stop sequences that occur inside reasoning
(SQuAD v2 stops at the first ``"\\n"``, GSM8K at ``"Question:"``). lm-eval 0.4.13's own ``think_end_token``
fixes this only for its vLLM back end (its ``hf`` back end and chat-completions client still send the stop
sequences to the model), so :class:`AnswerAfterThinking` wraps any lm-eval back end instead, and the same
rule holds for every model compared:

- each ``generate_until`` request is sent with ``max_gen_toks`` = the run's ``--max-new-tokens`` and without
  the task's stop sequences (the model stops at its end-of-turn token); the task's other settings (greedy
  decoding, temperature) are kept;
- the reply goes through lm-eval's own post-processing, ``postprocess_generated_text(reply, until, "</think>")``:
  the text after the last ``</think>``, then cut at the first of the task's stop sequences, left-stripped either
  way. A reply without ``</think>`` (a base model) is only cut at the stop sequences: the text lm-eval would
  have stopped at while generating (without leading blanks). The task's filters and metrics then see the answer;
- log-likelihood requests pass through unchanged.

:attr:`AnswerAfterThinking.sent` records, per task, the generation settings of the task and those sent, for the
report.

    >>> answer_of("<think>\\nQuestion: is it 4?\\nYes.\\n</think>\\n\\nThe answer is 4.\\nQuestion: next", ["\\n"])
    'The answer is 4.'
    >>> answer_of("The answer is 4.\\nQuestion: next", ["Question:"])
    'The answer is 4.\\n'
"""

from __future__ import annotations

from dataclasses import replace

from lm_eval.api.model import LM
from lm_eval.models.utils import postprocess_generated_text

THINK_END = "</think>"
# Every name lm-eval reads a generation budget from (normalize_gen_kwargs): replaced by the run's budget.
_BUDGET_KEYS = ("until", "max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")


def answer_of(reply: str, until: list[str] | str | None, think_end: str = THINK_END) -> str:
    """The answer part of ``reply`` cut at the task's stop sequences (lm-eval's own post-processing)."""
    return postprocess_generated_text(reply, until, think_end)


class AnswerAfterThinking(LM):
    """Wraps an lm-eval model (``inner``); see the module docstring."""

    def __init__(self, inner: LM, max_gen_toks: int, think_end: str = THINK_END):
        super().__init__()
        if max_gen_toks < 1:
            raise ValueError(f"max_gen_toks must be >= 1, got {max_gen_toks}")
        self.inner = inner
        self.max_gen_toks = max_gen_toks
        self.think_end = think_end
        self.sent: dict[str, dict] = {}  # task -> {"task": its generation kwargs, "sent": what the model got}

    # -- what lm-eval's evaluator asks of a model, answered by the wrapped one ---------------------------------
    def __getattr__(self, name):  # get_model_info, batch_sizes, tokenizer, ...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def rank(self) -> int:
        return self.inner.rank

    @property
    def world_size(self) -> int:
        return self.inner.world_size

    @property
    def device(self):
        return self.inner.device

    @property
    def tokenizer_name(self) -> str:
        return self.inner.tokenizer_name

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.inner.chat_template(chat_template)

    def apply_chat_template(self, chat_history, add_generation_prompt=True) -> str:
        return self.inner.apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt)

    def all_gather(self, tensor):
        return self.inner.all_gather(tensor)

    def gather_object(self, obj, dst=0):
        return self.inner.gather_object(obj, dst)

    def barrier(self) -> None:
        self.inner.barrier()

    def set_cache_hook(self, cache_hook) -> None:
        self.inner.set_cache_hook(cache_hook)

    def loglikelihood(self, requests, *args, **kwargs):
        return self.inner.loglikelihood(requests, *args, **kwargs)

    def loglikelihood_rolling(self, requests, *args, **kwargs):
        return self.inner.loglikelihood_rolling(requests, *args, **kwargs)

    # -- generation -----------------------------------------------------------------------------------------
    def request_kwargs(self, gen_kwargs: dict) -> dict:
        """The task's generation settings as sent: the run's budget, no stop sequence."""
        sent = {k: v for k, v in (gen_kwargs or {}).items() if k not in _BUDGET_KEYS}
        return {**sent, "until": [], "max_gen_toks": self.max_gen_toks}

    def generate_until(self, requests, *args, **kwargs) -> list[str]:
        sent_requests = []
        for req in requests:
            context, gen_kwargs = req.args[0], dict(req.args[1] or {})
            new = self.request_kwargs(gen_kwargs)
            self.sent.setdefault(str(req.task_name), {"task": gen_kwargs, "sent": new})
            meta = (req.task_name, req.doc_id, req.repeats)
            sent_requests.append(replace(req, arguments=(context, new), metadata=meta, resps=[], filtered_resps={}))
        replies = self.inner.generate_until(sent_requests, *args, **kwargs)
        if len(replies) != len(requests):
            raise RuntimeError(f"lm-eval model returned {len(replies)} replies for {len(requests)} requests")
        return [answer_of(r, (req.args[1] or {}).get("until"), self.think_end) for r, req in zip(replies, requests)]
