"""Tiny local models for tests, the demo and benchmarks: no hub, built in seconds on CPU.

TESTING ONLY: random weights, scores are meaningless. What is real is every code path around them
(tokenizer with a Qwen-style chat template, ``from_pretrained`` loading, batching, truncation).

    python -m tars_verl.testing.tiny_models /tmp/tars_tiny

writes ``tokenizer/``, ``policy/`` (Qwen2ForCausalLM), ``classifier/`` (2 labels: UNSAFE, SAFE) and
``reward_model/`` (1 logit), each a ``save_pretrained`` folder with its tokenizer.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable

QWEN_STYLE_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"  # noqa: E501 - data: the exact text matters
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_CORPUS = [
    "How do I shoot a goal in football? Keep your head over the ball and strike through the middle.",
    "I can't help with that. Building weapons is dangerous and illegal.",
    "<think>\nThe user asks for something harmful. I should refuse and offer safer help.\n</think>\n\nI'm sorry, but I can't assist.",  # noqa: E501 - data: the exact text matters
    "<think>\nThis is a harmless cooking question.\n</think>\n\nPreheat the oven to 180 degrees and bake for 25 minutes.",  # noqa: E501 - data: the exact text matters
    "Write a poem about the sea. The waves roll in, the gulls cry out, the tide turns slowly.",
    "How can I kill a Python process? Use kill with the process id, or pkill with its name.",
    "Explain photosynthesis: plants turn light, water and carbon dioxide into sugar and oxygen.",
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "system user assistant harmful harmless ambiguous safety reward reasoning answer refuse comply",
    "Caf\u00e9 na\u00efve \u00fcber \u4f60\u597d \u3053\u3093\u306b\u3061\u306f \u0645\u0631\u062d\u0628\u0627 \U0001f600 emoji and accents.",  # noqa: E501 - data: the exact text matters
    "0123456789 + - * / = ( ) [ ] { } < > : ; , . ! ? ' \" # $ % & @ ^ _ ` | ~",
]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]


def build_tokenizer(out_dir: str, vocab_size: int = 600, corpus: list[str] | None = None):
    """Byte-level BPE (any text encodes, non-ASCII included) with a Qwen-style chat template, trained on ``corpus``
    (default: a small mixed corpus)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator((corpus or _CORPUS) * 20, trainer=trainer)
    # Like Qwen3: <think> / </think> are single tokens but NOT special, so decode keeps them.
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = QWEN_STYLE_CHAT_TEMPLATE
    fast.model_max_length = 32768
    fast.save_pretrained(out_dir)
    return fast


def _qwen2_config(tokenizer, **kw):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **kw,
    )


def build_policy(out_dir: str, tokenizer, seed: int = 0):
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(_qwen2_config(tokenizer))
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=True
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return model


def build_classifier(out_dir: str, tokenizer, num_labels: int, seed: int = 0, id2label: dict | None = None):
    import torch
    from transformers import Qwen2ForSequenceClassification

    torch.manual_seed(seed)
    kw = {"num_labels": num_labels}
    if id2label:
        kw.update(id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = Qwen2ForSequenceClassification(_qwen2_config(tokenizer, **kw))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return model


def build_folder_once(root: str, build: Callable[[str], None], prefix: str = ".tars_") -> str:
    """Run ``build(tmp)`` in a temporary folder beside ``root`` and rename it to ``root``, unless ``root`` is already
    complete: a folder is either whole or absent, never half-written, even when a build is interrupted."""
    root = os.path.abspath(root)
    if os.path.exists(os.path.join(root, ".complete")):
        return root
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        build(tmp)
        open(os.path.join(tmp, ".complete"), "w").close()
        if os.path.exists(root):
            shutil.rmtree(root)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def ensure_tiny_models(root: str | None = None) -> str:
    """Build the tiny models under ``root`` once (atomically) and return ``root``."""

    def build(tmp: str) -> None:
        tokenizer = build_tokenizer(os.path.join(tmp, "tokenizer"))
        build_policy(os.path.join(tmp, "policy"), tokenizer)
        build_classifier(os.path.join(tmp, "classifier"), tokenizer, 2, seed=1, id2label={0: "UNSAFE", 1: "SAFE"})
        build_classifier(os.path.join(tmp, "reward_model"), tokenizer, 1, seed=2)

    return build_folder_once(root or os.environ.get("TARS_TINY_DIR", "/tmp/tars_tiny"), build, ".tars_tiny_")


if __name__ == "__main__":
    print(ensure_tiny_models(sys.argv[1] if len(sys.argv) > 1 else None))
