"""General capability kept after safety training, through lm-eval-harness (``lm_eval`` on PyPI).

The paper reports GSM8K, MATH-500, GPQA, MMLU-Pro and SQuAD; ``--capability paper`` runs lm-eval's
tasks for them (:data:`PAPER_TASKS`), or name any lm-eval tasks (``--capability gsm8k,mmlu_pro``) and
add local task YAMLs with ``--capability-include DIR``. The model is run with the same back end as
the safety generations (hf -> lm-eval ``hf``, vllm -> ``vllm``, openai -> ``local-chat-completions``).

The same settings for every model compared, fair to a model that reasons before answering
(:mod:`tars_verl.eval.reasoning_lm`):

- the chat template is applied (few-shot examples as turns, lm-eval's ``fewshot_as_multiturn``) for every model;
- every generative task gets the run's generation budget (``--max-new-tokens``, 4096 by default) instead of
  lm-eval's 256-token default or the task's own cap, and its stop sequences are applied to the answer, not
  while generating (SQuAD v2's ``"\n"`` no longer stops a model inside ``<think>``);
- the answer is the text after ``</think>`` (lm-eval's own ``postprocess_generated_text``), extracted before
  the task's filters, for every model (a model without ``</think>`` is unaffected);
- each task keeps its own prompt, few-shot examples, decoding (greedy for the paper's five), filters and metrics.

These settings, lm-eval's version and each task's version, n-shot, and generation settings (the task's and those
sent) are written into ``results.json`` and the report. Results go to ``<out>/capability/<model>.json``
(lm-eval's own output) and into the report next to the safety numbers; a rerun with the same model files,
tasks, limit and settings reuses them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass

import pandas as pd

from tars_verl.data.files import write_json_atomic
from tars_verl.eval.generate import GenConfig, model_fingerprint, resolve_backend

logger = logging.getLogger(__name__)

PAPER_TASKS = ("gsm8k", "minerva_math500", "gpqa_diamond_cot_zeroshot", "mmlu_pro", "squadv2")
# Changes when the way answers are read changes, so that cached results of another rule are not reused.
ANSWER_RULE = "answer after </think> (lm-eval postprocess_generated_text), task stops on the answer, v1"


@dataclass
class CapabilityConfig:
    tasks: list[str]
    include_path: str | None = None
    limit: int | None = None
    batch_size: str = "auto"

    @classmethod
    def from_args(cls, args) -> CapabilityConfig:
        tasks = [t.strip() for t in args.capability.split(",") if t.strip()]
        tasks = [t for name in tasks for t in (PAPER_TASKS if name == "paper" else (name,))]
        cfg = cls(tasks, args.capability_include, args.capability_limit, str(args.capability_batch_size))
        cfg.check()
        return cfg

    def task_manager(self):
        """lm-eval's task index (about 12 s to build on 2 CPU cores): built once per run."""
        if getattr(self, "_manager", None) is not None:
            return self._manager
        try:
            from lm_eval.tasks import TaskManager
        except ImportError as err:
            raise ImportError(f"--capability needs lm-eval-harness: pip install 'tars-verl[eval]' ({err})") from err
        if self.include_path and not os.path.isdir(self.include_path):
            raise FileNotFoundError(f"--capability-include {self.include_path}: no such folder")
        self._manager = TaskManager(include_path=self.include_path)
        return self._manager

    def check(self) -> None:
        """Fail before any generation on a missing lm-eval, an unknown task name, or a task whose Python helpers
        cannot be imported (``minerva_math500`` needs lm-eval's ``math`` extra: math_verify and antlr4 4.11)."""
        if not self.tasks:
            raise ValueError("--capability: no task names given")
        known = set(self.task_manager().all_tasks)
        unknown = [t for t in self.tasks if t not in known]
        if unknown:
            raise ValueError(
                f"--capability: unknown lm-eval task(s) {unknown}; list them with `lm_eval ls tasks`, "
                f"or add your own YAMLs with --capability-include DIR"
            )
        for task in self.tasks:
            self._check_imports(task, set())

    def _check_imports(self, name: str, seen: set[str]) -> None:
        """Load the task's YAML (and a group's or tag's members) with its ``!function`` helpers resolved, as
        lm-eval will when it builds the task, without building it (no dataset download)."""
        from lm_eval.tasks._yaml_loader import load_yaml

        if name in seen:
            return
        seen.add(name)
        index = self.task_manager().task_index
        entry = index.get(name)
        if entry is None:
            return
        if entry.yaml_path is not None:
            try:
                cfg = load_yaml(entry.yaml_path, resolve_func=True)
            except Exception as err:  # noqa: BLE001 - ImportError, AssertionError (a version check), ...
                raise ValueError(
                    f"--capability: lm-eval task {name!r} ({entry.yaml_path}) cannot be loaded: "
                    f"{type(err).__name__}: {err}. Install what it needs, or leave the task out (the math tasks need "
                    f"lm-eval's math extra, whose antlr4 4.11 conflicts with hydra-core: see docs/evaluation.md)"
                ) from err
            members = cfg.get("task") if isinstance(cfg.get("task"), list) else []
        else:
            members = []
        if entry.kind.name == "TAG":  # a tag's entry lists the tasks that carry it
            members += sorted(entry.tags or ())
        for member in members:
            if isinstance(member, str):
                self._check_imports(member, seen)


def lm_eval_model(path: str, gen: GenConfig) -> tuple[str, dict]:
    """lm-eval's model type and arguments for our back end."""
    backend = resolve_backend(gen.backend)
    if backend == "vllm":
        return "vllm", {
            "pretrained": path,
            "tensor_parallel_size": gen.tensor_parallel_size,
            "seed": gen.seed,
            "trust_remote_code": False,
        }
    if backend == "openai":
        args = {
            "model": path,
            "base_url": gen.openai_url.rstrip("/") + "/chat/completions",
            "num_concurrent": gen.max_concurrency,
            "max_retries": gen.max_retries,
            "tokenized_requests": False,
        }
        return "local-chat-completions", args
    import torch

    gpu = torch.cuda.is_available()
    return "hf", {
        "pretrained": path,
        "dtype": "bfloat16" if gpu else "float32",
        "device": "cuda" if gpu else "cpu",
        "trust_remote_code": False,
    }


def results_rows(model: str, results: dict) -> list[dict]:
    """lm-eval's ``results`` -> one row per (task, metric) with its standard error and sample count."""
    rows = []
    n_samples = results.get("n-samples", {})
    for task, metrics in results.get("results", {}).items():
        n = n_samples.get(task, {}).get("effective")
        for key, value in metrics.items():
            # "metric,filter" keys only: lm-eval also puts "alias" and "sample_len" (documents run) there.
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, _, flt = key.partition(",")
            stderr = metrics.get(f"{metric}_stderr,{flt}")
            name = f"{metric} ({flt})" if flt and flt != "none" else metric
            rows.append(
                {
                    "model": model,
                    "task": task,
                    "metric": name,
                    "value": float(value),
                    "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                    "n": n,
                }
            )
    return rows


@contextlib.contextmanager
def _openai_key(gen: GenConfig | None):
    """lm-eval's OpenAI-compatible client reads OPENAI_API_KEY: expose --api-key-env's key there for the call
    (the key stays in the process environment; it is never written or logged)."""
    if gen is None or not gen.api_key_env or gen.api_key_env == "OPENAI_API_KEY":
        yield
        return
    old = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = os.environ.get(gen.api_key_env, "")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = old


def lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def settings(gen: GenConfig) -> dict:
    """What every capability task was run with (the report's header prints it)."""
    return {
        "lm_eval": lm_eval_version(),
        "max_gen_toks": gen.max_new_tokens,
        "stop_sequences": "applied to the answer, not while generating",
        "answer": ANSWER_RULE,
        "apply_chat_template": True,
        "fewshot_as_multiturn": True,
    }


def task_settings(results: dict, sent: dict[str, dict] | None = None) -> list[dict]:
    """Per task: lm-eval's task version, n-shot, the task's own generation settings and those sent."""
    rows = []
    for task, version in sorted((results.get("versions") or {}).items()):
        cfg = (results.get("configs") or {}).get(task, {})
        row = {
            "task": task,
            "version": version,
            "n_shot": (results.get("n-shot") or {}).get(task),
            "output_type": cfg.get("output_type"),
        }
        if task in (sent or {}):
            row["generation_kwargs_task"] = sent[task]["task"]
            row["generation_kwargs_sent"] = sent[task]["sent"]
        rows.append(row)
    return rows


def run_capability(
    models: dict[str, str], cap: CapabilityConfig, gen: GenConfig, out_dir: str
) -> tuple[pd.DataFrame, dict]:
    """lm-eval's tasks for each model; returns the score table and what they were run with
    (:func:`settings` plus per-task versions and generation settings, per model)."""
    import lm_eval
    from lm_eval.api.registry import get_model

    from tars_verl.eval.reasoning_lm import AnswerAfterThinking

    os.makedirs(out_dir, exist_ok=True)
    manager = cap.task_manager()
    rows = []
    run_settings = settings(gen)
    per_model: dict[str, list[dict]] = {}
    for name, path in models.items():
        model_type, model_args = lm_eval_model(path, gen)
        key = hashlib.sha256(
            json.dumps(
                {
                    "fingerprint": model_fingerprint(path, resolve_backend(gen.backend)),
                    "model_type": model_type,
                    "model_args": model_args,
                    "tasks": cap.tasks,
                    "limit": cap.limit,
                    "seed": gen.seed,
                    "settings": run_settings,
                },
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()[:24]
        path_json = os.path.join(out_dir, f"{name}.json")
        if os.path.exists(path_json):
            with open(path_json) as f:
                cached = json.load(f)
            if cached.get("tars_key") == key:
                rows += results_rows(name, cached)
                per_model[name] = cached.get("task_settings", [])
                continue
            logger.warning(
                "%s: made with other model files, tasks, limit or settings; running lm-eval again", path_json
            )
        with _openai_key(gen if model_type == "local-chat-completions" else None):
            inner = get_model(model_type).create_from_arg_obj(
                model_args, {"batch_size": cap.batch_size if model_type == "hf" else None}
            )
            lm = AnswerAfterThinking(inner, max_gen_toks=gen.max_new_tokens)
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=list(cap.tasks),
                limit=cap.limit,
                apply_chat_template=True,
                fewshot_as_multiturn=True,
                task_manager=manager,
                log_samples=False,
                random_seed=gen.seed,
                numpy_random_seed=gen.seed,
                torch_random_seed=gen.seed,
                fewshot_random_seed=gen.seed,
            )
        if results is None:
            raise RuntimeError(f"lm-eval returned no results for model {name} ({path})")
        keep = {k: results[k] for k in ("results", "n-samples", "versions", "n-shot", "configs") if k in results}
        per_model[name] = task_settings(keep, lm.sent)
        write_json_atomic(
            {
                **keep,
                "tars_key": key,
                "model_type": model_type,
                "model_args": model_args,
                "settings": run_settings,
                "task_settings": per_model[name],
            },
            path_json,
        )
        rows += results_rows(name, keep)
    table = pd.DataFrame(rows, columns=["model", "task", "metric", "value", "stderr", "n"])
    return table, {**run_settings, "tasks": per_model}
