"""Generations for evaluation, cached so that an interrupted run resumes and a second judge reuses them.

The cache is an append-only JSONL file per model (``<out>/generations/<model>.jsonl``), one line per
(prompt_id, sample), flushed as generations finish; a torn last line is dropped on read.

A cached generation is reused only when everything that determines it is unchanged:

- the run key (``gen_key``, stored on every line and in ``<model>.meta.json``): the model's weights
  identity (:func:`model_fingerprint`: config, tokenizer files and each weight file's name, size and
  mtime, or the hub commit it resolves to), the back end and every sampling setting of :func:`sampling_settings`;
- the exact prompt text the model saw (``prompt_sha``, per line): a rebuilt eval set regenerates the
  prompts whose text changed.

When the run key differs, :func:`generate_for_model` refuses with a message naming what changed;
``regenerate=True`` (``--regenerate``) moves the old file aside (nothing is deleted) and starts anew.
Old and new generations are never mixed.

Decoding is greedy by default (``temperature=0``), as HarmBench generates the completions it judges
(``generate_completions.py``); ``temperature > 0`` samples (TARS trains and validates at 0.6), and
:func:`decoding` says which, for the report.

Back ends (all sample from the same recorded settings: temperature, top_p, top_k, repetition penalty,
max new tokens, one seed per (prompt, sample)):

- ``vllm``: offline ``vllm.LLM`` on a GPU; prompts are passed as token ids (the chat template already
  holds the BOS token, so vLLM must not add a second one), one ``generate`` call per chunk of
  ``chunk_size`` requests (default 1024, large enough for vLLM's own batching); the engine is shut
  down after each model.
- ``hf``: transformers ``generate`` (CPU for tests and small checks, or one GPU), batches of
  ``batch_size``; the model's own ``generation_config`` sampling defaults (top_k, repetition
  penalty, ...) are NOT used.
- ``openai``: any OpenAI-compatible chat endpoint (``vllm serve`` of a baseline, or an API model),
  through the project's shared HTTP layer (bounded concurrency, retries); every finished request is
  written at once, so a resume loses nothing.

``<think>`` is NOT pre-filled by default: the TARS models were trained writing ``<think>`` themselves.
``prefill_think=True`` (``--prefill-think``) appends ``<think>\\n`` to the generation prompt.
"""

from __future__ import annotations

import asyncio
import gc
import glob
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tqdm.auto import tqdm

from tars_verl.data.files import (
    append_jsonl_many,
    check_file_name,
    read_done,
    read_json_file,
    write_json_atomic,
)
from tars_verl.eval.prompts import EvalPrompt
from tars_verl.redaction import redact_url

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "hf", "vllm", "openai")


@dataclass
class GenConfig:
    """How every model is sampled. ``python -m tars_verl.eval`` reads these fields from its flags
    (``transformers.HfArgumentParser``: ``--top-p`` or ``--top_p`` for ``top_p``; the help is each field's)."""

    _argument_group_name = "generation (all models)"  # the --help section of these flags

    backend: str = field(default="auto", metadata={"choices": list(BACKENDS), "help": "auto: vllm on a GPU, else hf"})
    # 0 = greedy (HarmBench's default for attack evaluation); > 0 samples.
    temperature: float = field(
        default=0.0,
        metadata={
            "help": "0 = greedy decoding (the default: HarmBench's setting for attack evaluation); > 0 samples (e.g. "
            "0.6, TARS's training temperature, with --samples N); the report states which was used"
        },
    )
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    # 0 = no top-k cut (both back ends); set it explicitly, the model's generation_config is ignored.
    top_k: int = field(default=0, metadata={"help": "0 = off (the model's generation_config is not used)"})
    repetition_penalty: float = field(default=1.0, metadata={"help": "1.0 = off"})
    max_new_tokens: int = field(default=4096, metadata={"help": "tokens per generation (reasoning + answer)"})
    samples: int = field(default=1, metadata={"help": "generations per prompt"})
    prefill_think: bool = field(
        default=False,
        metadata={"help": "end the generation prompt with '<think>\\n' (off by default: the TARS models write it)"},
    )
    batch_size: int = field(default=16, metadata={"help": "hf back end: sequences per generate call"})
    chunk_size: int = field(default=1024, metadata={"help": "vllm/openai: requests per generate call / flush"})
    seed: int = field(default=0, metadata={"help": "base seed; each (prompt, sample) gets its own from it"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vllm back end: GPUs per model"})
    # openai back end: base URL (…/v1), API key variable, requests in flight, retries.
    openai_url: str = field(default="", metadata={"help": "--backend openai: the endpoint's base URL (…/v1)"})
    api_key_env: str | None = field(
        default=None, metadata={"help": "--backend openai: environment variable holding the API key"}
    )
    max_concurrency: int = field(default=32, metadata={"help": "--backend openai: requests in flight"})
    max_retries: int = field(default=5, metadata={"help": "--backend openai: retries of a failed request"})
    timeout_s: float = field(default=600.0, metadata={"help": "--backend openai: seconds per request"})
    # For APIs that reject vLLM's sampling extensions: send only OpenAI's own fields (then top_k and the
    # repetition penalty are the server's defaults, and top_k / repetition_penalty must stay 0 / 1.0).
    openai_standard_params_only: bool = field(
        default=False,
        metadata={
            "help": "--backend openai: do not send top_k / repetition_penalty (for APIs that reject them; "
            "by default they are sent so that a vLLM server's generation_config cannot apply)"
        },
    )

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"generation backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.samples < 1 or self.batch_size < 1 or self.chunk_size < 1 or self.max_new_tokens < 1:
            raise ValueError("--samples, --batch-size, --chunk-size and --max-new-tokens must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.repetition_penalty <= 0:
            raise ValueError(
                f"bad sampling settings: temperature={self.temperature} (>= 0), top_p={self.top_p} "
                f"((0, 1]), top_k={self.top_k} (>= 0), repetition_penalty={self.repetition_penalty} (> 0)"
            )
        if self.backend == "openai":
            if not self.openai_url:
                raise ValueError(
                    "--backend openai needs --openai-url (the endpoint's base URL, e.g. http://host:8000/v1)"
                )
            if self.openai_standard_params_only and (self.top_k or self.repetition_penalty != 1.0):
                raise ValueError("--openai-standard-params-only cannot send --top-k / --repetition-penalty")
            if self.prefill_think:
                raise ValueError(
                    "--prefill-think needs a back end that renders the chat template (hf or vllm); "
                    "an OpenAI-compatible chat endpoint renders it on the server"
                )


def decoding(cfg: GenConfig) -> str:
    """How the generations were decoded, as the report states it.

    >>> decoding(GenConfig()), decoding(GenConfig(temperature=0.6, samples=8))
    ('greedy', 'sampled (temperature 0.6, top_p 1.0, top_k off, 8 samples per prompt)')
    """
    if cfg.temperature == 0:
        return "greedy"
    top_k = cfg.top_k if cfg.top_k > 0 else "off"
    return (
        f"sampled (temperature {cfg.temperature}, top_p {cfg.top_p}, top_k {top_k}, {cfg.samples} samples per prompt)"
    )


def sampling_settings(cfg: GenConfig, backend: str) -> dict:
    """Everything that determines a generation besides the weights and the prompt (recorded in results.json)."""
    return {
        "backend": backend,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "top_k": cfg.top_k,
        "repetition_penalty": cfg.repetition_penalty,
        "max_new_tokens": cfg.max_new_tokens,
        "prefill_think": cfg.prefill_think,
        "seed": cfg.seed,
        **({"openai_standard_params_only": True} if backend == "openai" and cfg.openai_standard_params_only else {}),
    }


def request_seed(base_seed: int, prompt_id: str, sample_idx: int) -> int:
    """A distinct, reproducible seed per (prompt, sample): copies of a prompt never share one, and the
    seed does not depend on batching or on what an interrupted run had already finished."""
    digest = hashlib.sha256(f"{base_seed}\x00{prompt_id}\x00{sample_idx}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


_WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")
_HASHED_FILES = (
    "config.json",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "special_tokens_map.json",
)


def _hub_commit(model_id: str) -> str:
    """The commit a hub id resolves to now (what vLLM / transformers will load), from the hub when it can
    be reached, else from the local cache."""
    from huggingface_hub import snapshot_download

    errors = []
    for local_only in (False, True):
        try:
            folder = snapshot_download(model_id, allow_patterns=["config.json"], local_files_only=local_only)
            return os.path.basename(os.path.normpath(folder))
        except Exception as err:  # noqa: BLE001 - offline, gated or not cached: try the next way
            errors.append(f"{type(err).__name__}: {err}")
    raise ValueError(
        f"--model {model_id}: not a local folder, and its hub commit cannot be resolved "
        f"({'; '.join(e[:200] for e in errors)})"
    )


_FINGERPRINTS: dict[tuple, dict] = {}  # model_fingerprint's results in this process, by the files' stat


def model_fingerprint(model_path: str, backend: str) -> dict:
    """The weights' identity: a local folder by its config / tokenizer files (content) and weight files
    (name, size, mtime); a hub id by its commit (which fixes every file); an endpoint by URL + model.

    Computed once per model and process (an evaluation asks for it per set and attack): a local folder's is reused
    while no file in it changed name, size or mtime; a hub id's commit is resolved once."""
    if backend == "openai":
        return {"kind": "endpoint", "model": model_path}
    if not os.path.isdir(model_path):
        key = ("hub", model_path)
        if key not in _FINGERPRINTS:
            _FINGERPRINTS[key] = {"kind": "hub", "model": model_path, "commit": _hub_commit(model_path)}
        return dict(_FINGERPRINTS[key])
    with os.scandir(model_path) as entries:
        stats = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries if e.is_file())
    key = ("local", os.path.abspath(model_path), tuple(stats))
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = _folder_fingerprint(model_path)
    return dict(_FINGERPRINTS[key])


def _folder_fingerprint(model_path: str) -> dict:
    folder, kind = model_path, "local"
    h = hashlib.sha256()
    for name in _HASHED_FILES:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                h.update(name.encode() + b"\x00" + f.read())
    weights = []
    for pattern in _WEIGHT_GLOBS:
        for path in sorted(glob.glob(os.path.join(folder, pattern))):
            st = os.stat(path)
            weights.append([os.path.basename(path), st.st_size, st.st_mtime_ns])
    if not weights:
        raise ValueError(f"--model {model_path}: no weight files ({', '.join(_WEIGHT_GLOBS)}) in that folder")
    h.update(json.dumps(weights).encode())
    return {"kind": kind, "model": model_path, "files_sha256": h.hexdigest()}


def render(tokenizer, prompt: EvalPrompt, prefill_think: bool) -> str:
    text = tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
    return text + "<think>\n" if prefill_think else text


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class HFGenerator:
    def __init__(self, model_path: str, cfg: GenConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self.cfg = cfg
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = (
            AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, trust_remote_code=False)
            .to(self.device)
            .eval()
        )
        # transformers falls back to the model's generation_config for every setting a caller leaves at
        # its global default (top_k=50 -> the model's top_k=20, repetition_penalty=1.0 -> 1.05). Replace it
        # by a blank one that keeps only the stop tokens, so that only our settings apply (as in vLLM).
        own = self.model.generation_config
        eos = own.eos_token_id if own.eos_token_id is not None else self.tokenizer.eos_token_id
        self.model.generation_config = GenerationConfig(
            eos_token_id=eos, bos_token_id=own.bos_token_id, pad_token_id=self.tokenizer.pad_token_id
        )
        sample = cfg.temperature > 0
        self.gen_config = GenerationConfig(
            do_sample=sample,
            temperature=cfg.temperature if sample else None,
            top_p=cfg.top_p if sample else None,
            top_k=cfg.top_k if sample else None,
            repetition_penalty=cfg.repetition_penalty,
            max_new_tokens=cfg.max_new_tokens,
            eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id,
        )

    def generate(self, texts: list[str], seeds: list[int]) -> list[str]:
        """One batch; transformers has one random stream per batch, seeded from the batch's first request."""
        import torch

        torch.manual_seed(seeds[0])
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**enc, generation_config=self.gen_config)
        return self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)

    def close(self) -> None:
        import torch

        del self.model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class VLLMGenerator:
    def __init__(self, model_path: str, cfg: GenConfig):
        from vllm import LLM

        self.cfg = cfg
        self.llm = LLM(
            model=model_path, tensor_parallel_size=cfg.tensor_parallel_size, seed=cfg.seed, trust_remote_code=False
        )
        self.tokenizer = self.llm.get_tokenizer()

    def params(self, seed: int):
        from vllm import SamplingParams

        return SamplingParams(
            temperature=self.cfg.temperature,
            top_p=self.cfg.top_p,
            top_k=self.cfg.top_k if self.cfg.top_k > 0 else -1,
            repetition_penalty=self.cfg.repetition_penalty,
            max_tokens=self.cfg.max_new_tokens,
            seed=seed,
        )

    def generate(self, texts: list[str], seeds: list[int]) -> list[str]:
        """One ``generate`` over the whole chunk; each request has its own seed. The rendered chat
        template already holds the BOS token: pass token ids so that vLLM does not add another."""
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]  # one batched call (fast tokenizer)
        prompts = [{"prompt_token_ids": row} for row in ids]
        outputs = self.llm.generate(prompts, [self.params(s) for s in seeds], use_tqdm=False)
        return [o.outputs[0].text for o in outputs]

    def close(self) -> None:
        """Free the GPU for the next model: shut the engine down and tear down vLLM's process groups."""
        engine = getattr(self.llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        for obj in (core, engine, self.llm):
            if obj is not None and callable(getattr(obj, "shutdown", None)):
                try:
                    obj.shutdown()
                except Exception as err:  # noqa: BLE001 - best effort, keep freeing
                    logger.warning("vLLM shutdown: %s", err)
                break
        del self.llm
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # noqa: BLE001 - older/newer vLLM without these helpers
            pass
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


class OpenAIGenerator:
    """Chat completions against an OpenAI-compatible endpoint; ``model_path`` is the served model name."""

    tokenizer = None

    def __init__(self, model_path: str, cfg: GenConfig):
        from tars_verl.scorers.http_client import HttpEndpoint

        self.cfg = cfg
        self.model = model_path
        api_key = None
        if cfg.api_key_env:
            api_key = os.environ.get(cfg.api_key_env)
            if not api_key:
                raise ValueError(f"--api-key-env {cfg.api_key_env}: that environment variable is not set")
        self.endpoint = HttpEndpoint(
            cfg.openai_url,
            api_key=api_key,
            timeout_s=cfg.timeout_s,
            max_concurrency=cfg.max_concurrency,
            max_retries=cfg.max_retries,
        )

    def payload(self, messages: list[dict], seed: int) -> dict:
        cfg = self.cfg
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "max_tokens": cfg.max_new_tokens,
            "seed": seed,
        }
        # top_k / repetition_penalty are vLLM extensions. Always sent by default: `vllm serve` otherwise applies
        # the model's generation_config.json (e.g. top_k=20, repetition_penalty=1.05) to fields a request omits.
        if not cfg.openai_standard_params_only:
            body["top_k"] = cfg.top_k if cfg.top_k > 0 else -1
            body["repetition_penalty"] = cfg.repetition_penalty
        return body

    async def one(self, messages: list[dict], seed: int) -> str:
        from tars_verl.scorers.base import ScorerError
        from tars_verl.scorers.http_client import only_choice

        body = await self.endpoint.post_json("/chat/completions", self.payload(messages, seed))
        where = self.endpoint.where("/chat/completions")
        message = only_choice(body, where).get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(message, dict) or (text is not None and not isinstance(text, str)):
            # ScorerError scrubs its message: a reply that echoes the API key never shows it.
            raise ScorerError(f"{where}: no choices[0].message.content text in {str(body)[:200]!r}")
        return text or ""

    def close(self) -> None:
        pass


def resolve_backend(backend: str) -> str:
    if backend != "auto":
        return backend
    import importlib.util

    import torch

    return "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "hf"


def make_generator(model_path: str, cfg: GenConfig):
    backend = resolve_backend(cfg.backend)
    if backend not in ("hf", "vllm", "openai"):
        raise ValueError(f"generation backend must be one of {BACKENDS}, got {cfg.backend!r}")
    return {"vllm": VLLMGenerator, "hf": HFGenerator, "openai": OpenAIGenerator}[backend](model_path, cfg)


class StaleCacheError(ValueError):
    pass


def _check_cache(path: str, meta_path: str, done: dict, key: str, meta: dict, regenerate: bool) -> dict:
    stale = [rec for rec in done.values() if rec.get("gen_key") != key]
    if not stale:
        return done
    old = {}
    if os.path.exists(meta_path):
        old = read_json_file(meta_path, "generation cache metadata")
    changed = sorted(
        k
        for k in set(old.get("settings", {})) | set(meta["settings"])
        if old.get("settings", {}).get(k) != meta["settings"].get(k)
    )
    if old.get("fingerprint") != meta["fingerprint"]:
        changed.insert(0, "model weights/files")
    what = ", ".join(changed) if changed else "unknown (cache written by an older version)"
    if not regenerate:
        raise StaleCacheError(
            f"{path}: {len(stale)} cached generation(s) were made with other settings or weights (changed: {what}). "
            f"Refusing to mix them with new ones: pass --regenerate to set them aside and generate again, or use "
            f"another --out (or another --model NAME)."
        )
    aside = f"{path}.stale-{time.strftime('%Y%m%d-%H%M%S')}"
    os.replace(path, aside)
    logger.warning("%s: settings changed (%s); old generations moved to %s", path, what, aside)
    return {}


def run_key(model_path: str, cfg: GenConfig) -> tuple[str, dict]:
    """What determines a generation run (the model's identity and the sampling settings), as the key every cached
    generation carries (``gen_key``), and the metadata written beside the cache."""
    backend = resolve_backend(cfg.backend)
    meta = {
        "model": model_path,
        "fingerprint": model_fingerprint(model_path, backend),
        "settings": sampling_settings(cfg, backend),
    }
    if backend == "openai":  # the address identifies the model; its credentials do not (and are never written)
        meta["fingerprint"]["url"] = redact_url(cfg.openai_url.rstrip("/"))
    return _sha(json.dumps({"fingerprint": meta["fingerprint"], "settings": meta["settings"]}, sort_keys=True)), meta


_TOKENIZERS: dict[tuple, Any] = {}


def _tokenizer(model_path: str):
    """The model's tokenizer, loaded once per model folder (or hub id) and fingerprint in this process."""
    key = (model_path, json.dumps(model_fingerprint(model_path, "hf"), sort_keys=True))
    if key not in _TOKENIZERS:
        from transformers import AutoTokenizer

        _TOKENIZERS[key] = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
    return _TOKENIZERS[key]


def prompt_sha(text: str) -> str:
    """The identity of a rendered prompt (``prompt_sha`` of a cached generation)."""
    return _sha(text)


def generate_for_model(
    model_name: str,
    model_path: str,
    prompts: list[EvalPrompt],
    cfg: GenConfig,
    cache_dir: str,
    regenerate: bool = False,
) -> dict[tuple[str, int], dict]:
    """Every (prompt, sample) generation for one model, from the cache where it is still valid."""
    cfg.validate()
    check_file_name(model_name, "--model name")  # it names the cache files: never a hidden or escaped path
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"{model_name}.jsonl")
    meta_path = os.path.join(cache_dir, f"{model_name}.meta.json")
    backend = resolve_backend(cfg.backend)
    key, meta = run_key(model_path, cfg)
    done = _check_cache(path, meta_path, read_done(path), key, meta, regenerate)
    write_json_atomic({**meta, "gen_key": key}, meta_path)

    generator = None
    if backend == "openai":  # the server renders the chat template: the messages are the prompt
        texts = {p.prompt_id: json.dumps(p.messages, ensure_ascii=False, sort_keys=True) for p in prompts}
    else:
        if not done:
            # Nothing cached: every prompt is generated, so the engine is needed anyway and its own tokenizer
            # renders the chat template (no second tokenizer load).
            generator = make_generator(model_path, cfg)
            tok = getattr(generator, "tokenizer", None) or _tokenizer(model_path)  # a generator may have none
        else:  # only the tokenizer, to tell which cached generations still match their prompt text
            tok = _tokenizer(model_path)
        texts = {p.prompt_id: render(tok, p, cfg.prefill_think) for p in prompts}
    shas = {pid: _sha(t) for pid, t in texts.items()}
    todo = [
        (p, k)
        for p in prompts
        for k in range(cfg.samples)
        if done.get((p.prompt_id, k), {}).get("prompt_sha") != shas[p.prompt_id]
    ]
    n_changed = sum(1 for p, k in todo if (p.prompt_id, k) in done)
    if n_changed:
        logger.warning(
            "%s: %d cached generation(s) had another prompt text (rebuilt eval set?); regenerating them",
            model_name,
            n_changed,
        )
    if not todo:
        if generator is not None:
            generator.close()
        return done
    generator = generator or make_generator(model_path, cfg)
    bar = tqdm(total=len(todo), desc=f"generating ({model_name})", disable=None)

    def record(p: EvalPrompt, k: int, text: str, seed: int) -> dict:
        return {
            "prompt_id": p.prompt_id,
            "sample_idx": k,
            "response": text,
            "model": model_name,
            "think_prefilled": cfg.prefill_think,
            "gen_key": key,
            "prompt_sha": shas[p.prompt_id],
            "seed": seed,
        }

    try:
        with open(path, "a") as log:

            def write(*recs: dict) -> None:
                append_jsonl_many(log, list(recs))  # one write; a generation echoing a registered secret is scrubbed
                done.update(((rec["prompt_id"], rec["sample_idx"]), rec) for rec in recs)

            step = cfg.batch_size if backend == "hf" else cfg.chunk_size
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                seeds = [request_seed(cfg.seed, p.prompt_id, k) for p, k in chunk]
                if backend == "openai":
                    asyncio.run(
                        _openai_chunk(
                            generator,
                            chunk,
                            seeds,
                            lambda i, text, chunk=chunk, seeds=seeds: (
                                write(record(chunk[i][0], chunk[i][1], text, seeds[i])),
                                log.flush(),
                                bar.update(1),
                            ),
                        )
                    )
                    continue
                outputs = generator.generate([texts[p.prompt_id] for p, _ in chunk], seeds)
                write(*(record(p, k, text, seed) for (p, k), text, seed in zip(chunk, outputs, seeds)))  # one per chunk
                log.flush()
                bar.update(len(chunk))
    finally:
        bar.close()
        generator.close()
    return done


async def _openai_chunk(generator: OpenAIGenerator, chunk, seeds, on_done) -> None:
    async def one(i: int):
        return i, await generator.one(chunk[i][0].messages, seeds[i])

    try:
        for fut in asyncio.as_completed([one(i) for i in range(len(chunk))]):
            i, text = await fut
            on_done(i, text)
    finally:
        await generator.endpoint.aclose()


def settings_record(cfg: GenConfig) -> dict:
    """What results.json records about generation (the settings, without secrets)."""
    out = asdict(cfg)
    out["openai_url"] = redact_url(cfg.openai_url) if cfg.openai_url else cfg.openai_url
    out["backend_resolved"] = resolve_backend(cfg.backend)
    return out
