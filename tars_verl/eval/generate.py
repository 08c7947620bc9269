"""Generations for evaluation, cached so that an interrupted run resumes and a second judge reuses them.

The cache is an append-only JSONL file per model (``<out>/generations/<model>.jsonl``), one line per
(prompt_id, sample), flushed as soon as a batch finishes; a torn last line is dropped on read.
Back ends: vLLM (``backend=vllm``, GPU) and transformers ``generate`` (``backend=hf``: CPU for tests
and small checks, or one GPU). ``auto`` picks vLLM when it is importable and a GPU is present.

Paper defaults: ``<think>`` pre-filled after training (the generation prompt ends with ``<think>\\n``),
temperature 0.6, one sample per prompt.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from tqdm.auto import tqdm

from ..data.io import read_done
from .prompts import EvalPrompt

logger = logging.getLogger(__name__)


@dataclass
class GenConfig:
    backend: str = "auto"
    temperature: float = 0.6
    top_p: float = 1.0
    max_new_tokens: int = 4096
    samples: int = 1
    prefill_think: bool = True
    batch_size: int = 16
    seed: int = 0
    tensor_parallel_size: int = 1
    trust_remote_code: bool = False


def render(tokenizer, prompt: EvalPrompt, prefill_think: bool) -> str:
    text = tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
    return text + "<think>\n" if prefill_think else text


class HFGenerator:
    def __init__(self, model_path: str, cfg: GenConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=cfg.trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=dtype, trust_remote_code=cfg.trust_remote_code).to(self.device).eval()

    def generate(self, texts: list[str], seed: int) -> list[str]:
        import torch

        torch.manual_seed(seed)
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(
                **enc, do_sample=self.cfg.temperature > 0, temperature=self.cfg.temperature or None,
                top_p=self.cfg.top_p, max_new_tokens=self.cfg.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


class VLLMGenerator:
    def __init__(self, model_path: str, cfg: GenConfig):
        from vllm import LLM

        self.cfg = cfg
        self.llm = LLM(model=model_path, tensor_parallel_size=cfg.tensor_parallel_size, seed=cfg.seed,
                       trust_remote_code=cfg.trust_remote_code)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, texts: list[str], seed: int) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                                max_tokens=self.cfg.max_new_tokens, seed=seed)
        return [o.outputs[0].text for o in self.llm.generate(texts, params, use_tqdm=False)]


def make_generator(model_path: str, cfg: GenConfig):
    backend = cfg.backend
    if backend == "auto":
        import importlib.util

        import torch

        backend = "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "hf"
    if backend not in ("hf", "vllm"):
        raise ValueError(f"generation backend must be auto, hf or vllm, got {cfg.backend!r}")
    return (VLLMGenerator if backend == "vllm" else HFGenerator)(model_path, cfg)


def generate_for_model(model_name: str, model_path: str, prompts: list[EvalPrompt], cfg: GenConfig,
                       cache_dir: str) -> dict[tuple[str, int], dict]:
    """Every (prompt, sample) generation for one model, from the cache where present."""
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"{model_name}.jsonl")
    done = read_done(path)
    todo = [(p, k) for p in prompts for k in range(cfg.samples) if (p.prompt_id, k) not in done]
    if not todo:
        return done
    generator = make_generator(model_path, cfg)
    bar = tqdm(total=len(todo), desc=f"generating ({model_name})", disable=None)
    with open(path, "a") as log:
        for start in range(0, len(todo), cfg.batch_size):
            chunk = todo[start: start + cfg.batch_size]
            texts = [render(generator.tokenizer, p, cfg.prefill_think) for p, _ in chunk]
            outputs = generator.generate(texts, seed=cfg.seed + start)
            for (p, k), text in zip(chunk, outputs):
                rec = {"prompt_id": p.prompt_id, "sample_idx": k, "response": text, "model": model_name,
                       "think_prefilled": cfg.prefill_think}
                log.write(json.dumps(rec, ensure_ascii=False) + "\n")
                done[(p.prompt_id, k)] = rec
            log.flush()
            bar.update(len(chunk))
    bar.close()
    return done
