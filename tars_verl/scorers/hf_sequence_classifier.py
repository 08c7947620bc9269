"""In-process transformers sequence classifiers: loading, batching, forward in a worker thread."""

from __future__ import annotations

import asyncio
import sys
import threading
from dataclasses import dataclass

import torch

from .base import ScorerConfig, ScorerConfigError, ScorerError


@dataclass
class HFModelConfig(ScorerConfig):
    model_path: str = ""
    # Defaults to model_path; a scorer's tokenizer is independent of the policy's.
    tokenizer_path: str | None = None
    # "auto": cpu inside a Ray worker that was given no GPU (verl's reward workers), else cuda when
    # available, else cpu. Set "cuda" / "cuda:N" explicitly to put the scorer on a GPU you set aside.
    device: str = "auto"
    # "auto" (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.
    dtype: str = "auto"
    max_length: int = 2048
    # Which end of an over-long input is cut: "right" keeps the prompt, "left" keeps the answer's end.
    truncation_side: str = "right"
    # Padded tokens per forward pass: inputs are sorted by length and chunked under this budget.
    max_batch_tokens: int = 16384
    trust_remote_code: bool = False

    def validate(self) -> None:
        super().validate()
        if not self.model_path:
            raise ScorerConfigError(f"{self.backend}.model_path is not set (a local folder or a hub id)")
        if self.truncation_side not in ("left", "right"):
            raise ScorerConfigError(f"{self.backend}.truncation_side must be 'left' or 'right'")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ScorerConfigError(f"{self.backend}.dtype must be auto, float32, bfloat16 or float16")


def ray_worker_gpu_ids() -> list | None:
    """The GPUs Ray gave this worker process, or None outside a Ray worker (driver, plain Python)."""
    if "ray" not in sys.modules:  # a Ray worker has imported ray before running any of our code
        return None
    import ray

    if not ray.is_initialized():
        return None
    from ray._private.worker import WORKER_MODE, global_worker

    if global_worker.mode != WORKER_MODE:
        return None
    return list(ray.get_gpu_ids())


def resolve_device(device: str) -> torch.device:
    """``device`` as set, or for ``auto``: never a GPU this process was not given.

    Ray no longer hides GPUs from actors that ask for none, so ``torch.cuda.is_available()`` is True in
    verl's CPU reward workers on a GPU node; a scorer picking ``cuda`` there would put one model copy per
    worker on GPU 0, next to the actor and vLLM. Inside a Ray worker ``auto`` therefore means cuda only
    when Ray assigned this worker a GPU.
    """
    if device != "auto":
        return torch.device(device)
    gpus = ray_worker_gpu_ids()
    if gpus is not None and not gpus:
        return torch.device("cpu")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class HFSequenceClassifier:
    """A tokenizer + AutoModelForSequenceClassification pair; ``logits(texts)`` runs off the event loop."""

    def __init__(self, cfg: HFModelConfig):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = resolve_device(cfg.device)
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.dtype)
        if dtype is None:
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(
            cfg.tokenizer_path or cfg.model_path, trust_remote_code=cfg.trust_remote_code
        )
        self.tokenizer.truncation_side = cfg.truncation_side
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = (
            AutoModelForSequenceClassification.from_pretrained(
                cfg.model_path, dtype=dtype, trust_remote_code=cfg.trust_remote_code
            )
            .to(self.device)
            .eval()
        )
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.max_length = cfg.max_length
        self.max_batch_tokens = max(cfg.max_batch_tokens, cfg.max_length)
        self._lock = threading.Lock()  # one forward at a time per model

    def _encode(self, texts: list[str], pairs: list[str] | None) -> tuple[list[list[int]], list[bool]]:
        """Token ids (truncated to max_length) and whether each input was cut; each text tokenised once."""
        ids = self.tokenizer(texts, pairs, add_special_tokens=True, truncation=False)["input_ids"]
        truncated = [len(x) > self.max_length for x in ids]
        for i in (i for i, t in enumerate(truncated) if t):  # only the long ones go through again
            ids[i] = self.tokenizer(
                texts[i],
                pairs[i] if pairs else None,
                add_special_tokens=True,
                truncation=True,
                max_length=self.max_length,
            )["input_ids"]
        # A decoder classifier cannot pool zero tokens (e.g. an empty answer with a BOS-less
        # tokenizer): score it as a lone end-of-text token, i.e. "nothing was said".
        ids = [x if x else [self.tokenizer.eos_token_id] for x in ids]
        return ids, truncated

    def _logits_sync(self, texts: list[str], pairs: list[str] | None) -> tuple[torch.Tensor, list[bool]]:
        with self._lock:
            ids, truncated = self._encode(texts, pairs)
            # Sort by length and cut into chunks of at most max_batch_tokens padded tokens: less padding.
            order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
            logits: list[torch.Tensor | None] = [None] * len(ids)
            start = 0
            while start < len(order):
                end = start + 1
                while end < len(order) and (end - start + 1) * len(ids[order[end]]) <= self.max_batch_tokens:
                    end += 1
                chunk = order[start:end]
                enc = self.tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt").to(self.device)
                with torch.inference_mode():
                    out = self.model(**enc).logits.float().cpu()
                for row, i in enumerate(chunk):
                    logits[i] = out[row]
                start = end
        return torch.stack(logits), truncated

    async def logits(self, texts: list[str], pairs: list[str] | None = None) -> tuple[torch.Tensor, list[bool]]:
        """Logits per input; a NaN / inf logit (e.g. fp16 overflow) raises ScorerError naming the model and items."""
        logits, truncated = await asyncio.get_running_loop().run_in_executor(None, self._logits_sync, texts, pairs)
        bad = (~torch.isfinite(logits)).flatten(1).any(dim=1).nonzero().flatten().tolist()
        if bad:
            raise ScorerError(
                f"{self.model.name_or_path}: non-finite logits for item(s) {bad[:10]} of {len(texts)} "
                f"(e.g. {logits[bad[0]].tolist()}); try dtype=float32"
            )
        return logits, truncated
