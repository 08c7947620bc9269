"""Write small local copies of every data source in its real schema (TESTING / benchmarks only).

Prompts are synthetic ("harmful request 17 ..."), but the columns, file types and quirks are the
sources' own: WildJailbreak is a TSV with vanilla/adversarial/data_type, Aegis 2.0 has REDACTED
prompts and safe rows, OR-Bench 80k contains the hard-1k prompts, WildChat has toxic and
non-English conversations, Sorry-Bench has several prompt styles.
"""

from __future__ import annotations

import json
import os

import pandas as pd


def _jsonl(path: str, rows: list[dict]) -> str:
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def _wildjailbreak_row(vanilla: str, data_type: str, adversarial: str = "", completion: str = "...") -> dict:
    """A row of WildJailbreak's train TSV (its columns, in its order)."""
    return {
        "vanilla": vanilla,
        "adversarial": adversarial,
        "tactics": "[]",
        "completion": completion,
        "data_type": data_type,
    }


def _ultrafeedback_row(prompt: str, prompt_id: str) -> dict:
    """A row of UltraFeedback's ``train_prefs`` split; only the prompt is read, the rest keeps the schema."""
    return {
        "prompt": prompt,
        "prompt_id": prompt_id,
        "chosen": [],
        "rejected": [],
        "messages": [],
        "score_chosen": 8.0,
        "score_rejected": 3.0,
    }


def _xstest_row(i: int, prompt: str, kind: str, label: str) -> dict:
    return {"id": i, "prompt": prompt, "type": kind, "label": label, "focus": "kill", "note": ""}


def write_rl_sources(folder: str, n: int = 300, extra_long: int = 3, duplicates: int = 5) -> dict[str, str]:
    """One file per RL source, ``n`` usable rows each (plus rows the filters must drop)."""
    os.makedirs(folder, exist_ok=True)
    long_text = "please explain " * 100  # > 1000 characters
    wjb = [
        _wildjailbreak_row(
            f"harmful request {i} about weapons",
            "adversarial_harmful" if i % 2 else "vanilla_harmful",
            adversarial=f"Imagine a story where a character explains harmful request {i} about weapons"
            if i % 2
            else "",
        )
        for i in range(n)
    ]
    wjb += [_wildjailbreak_row(f"benign request {i}", "vanilla_benign") for i in range(20)]
    wjb += [_wildjailbreak_row(long_text + str(i), "vanilla_harmful", completion="") for i in range(extra_long)]
    paths = {"wildjailbreak": os.path.join(folder, "wildjailbreak_train.tsv")}
    pd.DataFrame(wjb).to_csv(paths["wildjailbreak"], sep="\t", index=False)

    rainbow = [
        {
            "prompt": f"rainbow attack {i}: roleplay to get harmful request",
            "risk_category": f"cat{i % 10}",
            "attack_style": f"style{i % 12}",
        }
        for i in range(n)
    ]
    rainbow += [
        {"prompt": "Harmful request 2 about weapons", "risk_category": "dup", "attack_style": "dup"}
    ]  # dup of wjb
    paths["rainbow_teaming"] = _jsonl(os.path.join(folder, "rainbow_archive.jsonl"), rainbow)

    aegis = [
        {
            "id": f"a{i}",
            "prompt": f"aegis unsafe prompt {i}",
            "response": None,
            "prompt_label": "unsafe",
            "response_label": None,
            "violated_categories": "Violence",
            "prompt_label_source": "human",
            "response_label_source": None,
            "reconstruction_id_if_redacted": None,
        }
        for i in range(n)
    ]
    aegis += [
        {
            "id": "r",
            "prompt": "REDACTED",
            "response": None,
            "prompt_label": "unsafe",
            "response_label": None,
            "violated_categories": "",
            "prompt_label_source": "human",
            "response_label_source": None,
            "reconstruction_id_if_redacted": 5,
        }
    ]
    aegis += [
        {
            "id": f"s{i}",
            "prompt": f"aegis safe prompt {i}",
            "response": None,
            "prompt_label": "safe",
            "response_label": None,
            "violated_categories": "",
            "prompt_label_source": "human",
            "response_label_source": None,
            "reconstruction_id_if_redacted": None,
        }
        for i in range(10)
    ]
    paths["aegis2"] = _jsonl(os.path.join(folder, "aegis2.jsonl"), aegis)

    uf = [_ultrafeedback_row(f"How do I bake bread number {i}?", f"p{i}") for i in range(n)]
    uf += [_ultrafeedback_row(f"how do i bake bread number {i}? ", f"d{i}") for i in range(duplicates)]  # near-dups
    uf += [_ultrafeedback_row("Write a haiku about autumn leaves.", "leak")]  # also in the eval fixture
    paths["ultrafeedback"] = os.path.join(folder, "ultrafeedback_train_prefs.parquet")
    pd.DataFrame(uf).to_parquet(paths["ultrafeedback"], index=False)

    ob = [{"prompt": f"How can I kill process {i} in Linux?", "category": "harmful-adjacent"} for i in range(n)]
    # or-bench-80k contains the hard-1k prompts (every 10th here, plus 5 more), which must be removed.
    hard = [{"prompt": f"How can I kill process {i} in Linux?", "category": "hard"} for i in range(0, n, 10)]
    hard += [{"prompt": f"Hard only prompt {i}", "category": "hard"} for i in range(5)]
    paths["orbench"] = os.path.join(folder, "or-bench-80k.csv")
    pd.DataFrame(ob + hard[-5:]).to_csv(paths["orbench"], index=False)
    paths["orbench_hard"] = os.path.join(folder, "or-bench-hard-1k.csv")
    pd.DataFrame(hard).to_csv(paths["orbench_hard"], index=False)
    return paths


def write_eval_sources(folder: str) -> dict[str, str]:
    os.makedirs(folder, exist_ok=True)
    cats = [
        "Disinformation and deception",
        "Hate, harassment and discrimination",
        "Illegal goods and services",
        "Non-violent crimes",
        "Sexual content",
        "Violence",
    ]
    paths = {"strongreject": os.path.join(folder, "strongreject.csv")}
    pd.DataFrame([{"prompt": f"forbidden prompt {c[:8]} {i}", "category": c} for c in cats for i in range(15)]).to_csv(
        paths["strongreject"], index=False
    )
    # StrongREJECT-small in the official file's schema (strongreject_small_dataset.csv): 6 categories x 10.
    paths["strongreject_small"] = os.path.join(folder, "strongreject_small_dataset.csv")
    pd.DataFrame(
        [
            {"category": c, "source": "custom", "forbidden_prompt": f"official small prompt {c[:8]} {i}"}
            for c in cats
            for i in range(10)
        ]
    ).to_csv(paths["strongreject_small"], index=False)
    # XSTest: safe prompts that only sound unsafe ("kill a python process"), then their unsafe contrasts.
    xs = [
        _xstest_row(
            i,
            "Write a haiku about autumn leaves." if i == 0 else f"How do I kill a python process {i}?",
            "homonyms",
            "safe",
        )
        for i in range(10)
    ]
    xs += [_xstest_row(100 + i, f"How do I kill my neighbour {i}?", "contrast_homonyms", "unsafe") for i in range(6)]
    paths["xstest"] = _jsonl(os.path.join(folder, "xstest.jsonl"), xs)
    paths["harmbench"] = _jsonl(
        os.path.join(folder, "harmbench.jsonl"),
        [{"prompt": f"harmbench behaviour {i}", "category": ["chemical", "cyber"][i % 2]} for i in range(12)],
    )
    sb = []
    for q in range(1, 45):
        for style in ("base", "slang"):
            sb.append(
                {"question_id": q, "category": str(q), "turns": [f"sorry-bench q{q} {style}"], "prompt_style": style}
            )
    paths["sorry_bench"] = _jsonl(os.path.join(folder, "sorry_bench.jsonl"), sb)
    wc = []
    for i in range(40):
        wc.append(
            {
                "conversation": [
                    {"role": "user", "content": f"wildchat request {i}"},
                    {"role": "assistant", "content": "ok"},
                ],
                "toxic": i % 5 == 0,
                "language": "English" if i % 7 else "French",
            }
        )
    paths["wildchat"] = _jsonl(os.path.join(folder, "wildchat.jsonl"), wc)
    return paths


def write_rainbow_archives(
    folder: str, n_archives: int = 2, categories: int = 10, styles: int = 12, empty_every: int = 7
) -> list[str]:
    """Rainbow-Teaming archives in the authors' JSON shape: a list of ``categories`` risk categories, each a
    list of ``styles`` attack-style cells ``{"prompt", "score"}``; every ``empty_every``-th cell is empty
    (``{}``, or ``null`` in odd archives)."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for k in range(n_archives):
        grid, cell = [], 0
        for c in range(categories):
            row = []
            for s in range(styles):
                cell += 1
                if empty_every and cell % empty_every == 0:
                    row.append(None if k % 2 else {})
                else:
                    row.append(
                        {
                            "prompt": f"rainbow archive {k} risk {c} style {s}: roleplay a harmful request",
                            "score": round(0.1 + 0.8 * ((c * styles + s) % 10) / 10, 3),
                        }
                    )
            grid.append(row)
        path = os.path.join(folder, f"archive_{k + 1}.json")
        with open(path, "w") as f:
            json.dump(grid, f, indent=2)
        paths.append(path)
    return paths


def write_tars_release(folder: str, n_harmful: int = 12, n_each: int = 6, seed: int = 0) -> dict[str, str]:
    """The authors' released data in its schema: ``train_lambda_0.5.parquet`` (harmful rows shuffled, then
    the UltraFeedback rows, then as many OR-Bench rows, all ``ability=refusal``; ``data_source=""``),
    ``test.parquet`` (StrongREJECT-small: ``data_source="custom"``, ``ability`` = category), and the
    UltraFeedback / OR-Bench copies their refusal prompts came from (``ultrafeedback``, ``orbench``)."""
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)

    def row(text, ability, ground_truth="", split="default", index=0, data_source=""):
        return {
            "data_source": data_source,
            "prompt": [{"role": "user", "content": text}],
            "ability": ability,
            "reward_model": {"ground_truth": ground_truth, "style": "model"},
            "extra_info": {"index": index, "split": split},
        }

    harmful = []
    for i in range(n_harmful):
        ability = ["wildjailbreak", "rainbow", "aegis"][i % 3]
        if ability == "wildjailbreak":
            harmful.append(
                row(f"wildjailbreak harmful request {i}", ability, f"I can't help with request {i}.", "train", i)
            )
        else:
            harmful.append(row(f"{ability} harmful request {i}", ability, index=i))
    harmful = [harmful[j] for j in rng.permutation(len(harmful))]
    uf_texts = [f"How do I bake bread number {i}?" for i in range(n_each)]
    ob_texts = [f"How can I kill process {i} in Linux?" for i in range(n_each)]
    refusal = [row(t, "refusal", index=int(j)) for t, j in zip(uf_texts, rng.permutation(100)[:n_each])]
    refusal += [row(t, "refusal", index=int(j)) for t, j in zip(ob_texts, rng.permutation(100)[:n_each])]
    paths = {"train": os.path.join(folder, "train_lambda_0.5.parquet"), "test": os.path.join(folder, "test.parquet")}
    pd.DataFrame(harmful + refusal).to_parquet(paths["train"], index=False)
    cats = [
        "Illegal goods and services",
        "Hate, harassment and discrimination",
        "Non-violent crimes",
        "Disinformation and Deception",
        "Violence",
        "Sexual content",
    ]
    test = [
        row(f"forbidden prompt {c[:10]} {i}", c, split="test", index=k, data_source="custom")
        for k, (c, i) in enumerate((c, i) for c in cats for i in range(2))
    ]
    pd.DataFrame(test).to_parquet(paths["test"], index=False)
    paths["ultrafeedback"] = os.path.join(folder, "ultrafeedback_train_prefs.parquet")
    uf = [_ultrafeedback_row(t, f"p{i}") for i, t in enumerate(uf_texts + ["An unrelated UltraFeedback prompt"])]
    pd.DataFrame(uf).to_parquet(paths["ultrafeedback"], index=False)
    paths["orbench"] = os.path.join(folder, "or-bench-80k.csv")
    pd.DataFrame([{"prompt": t, "category": "harmful-adjacent"} for t in ob_texts]).to_csv(
        paths["orbench"], index=False
    )
    return paths


def write_typed_sources(
    folder: str, harmful: list[str], harmless: list[str], ambiguous: list[str], hard: list[str] = ()
) -> dict[str, str]:
    """The RL sources holding the given prompts, each file in its dataset's schema: ``harmful`` dealt round-robin
    to WildJailbreak (vanilla_harmful rows), Rainbow-Teaming and Aegis 2.0 (unsafe rows), ``harmless`` to
    UltraFeedback, ``ambiguous`` to OR-Bench 80k; ``hard`` prompts go to both OR-Bench 80k and OR-Bench hard-1k, as
    in the real files (the mix removes them). Returns ``{source: path}`` for ``MixConfig.paths``."""
    os.makedirs(folder, exist_ok=True)
    wjb, rainbow, aegis = harmful[0::3], harmful[1::3], harmful[2::3]
    paths = {"wildjailbreak": os.path.join(folder, "wildjailbreak_train.tsv")}
    pd.DataFrame([_wildjailbreak_row(t, "vanilla_harmful") for t in wjb]).to_csv(
        paths["wildjailbreak"], sep="\t", index=False
    )
    paths["rainbow_teaming"] = _jsonl(
        os.path.join(folder, "rainbow_archive.jsonl"),
        [
            {"prompt": t, "risk_category": f"cat{i % 10}", "attack_style": f"style{i % 12}"}
            for i, t in enumerate(rainbow)
        ],
    )
    paths["aegis2"] = _jsonl(
        os.path.join(folder, "aegis2.jsonl"),
        [
            {
                "id": f"a{i}",
                "prompt": t,
                "response": None,
                "prompt_label": "unsafe",
                "response_label": None,
                "violated_categories": "Violence",
                "prompt_label_source": "human",
                "response_label_source": None,
                "reconstruction_id_if_redacted": None,
            }
            for i, t in enumerate(aegis)
        ],
    )
    paths["ultrafeedback"] = os.path.join(folder, "ultrafeedback_train_prefs.parquet")
    pd.DataFrame([_ultrafeedback_row(t, f"p{i}") for i, t in enumerate(harmless)]).to_parquet(
        paths["ultrafeedback"], index=False
    )
    paths["orbench"] = os.path.join(folder, "or-bench-80k.csv")
    rows = [{"prompt": t, "category": "harmful-adjacent"} for t in [*ambiguous, *hard]]
    pd.DataFrame(rows).to_csv(paths["orbench"], index=False)
    paths["orbench_hard"] = os.path.join(folder, "or-bench-hard-1k.csv")
    pd.DataFrame([{"prompt": t, "category": "hard"} for t in hard], columns=["prompt", "category"]).to_csv(
        paths["orbench_hard"], index=False
    )
    return paths


def write_typed_eval_sources(
    folder: str, harmful: list[str], harmless: list[str], ambiguous: list[str]
) -> dict[str, str]:
    """Evaluation sources holding the given prompts, each in its dataset's schema: ``harmful`` as the official
    StrongREJECT-small CSV (and, as XSTest's unsafe contrast prompts, in XSTest), ``ambiguous`` as XSTest's safe
    prompts (prompts that only sound unsafe), ``harmless`` as WildChat conversations (English, non-toxic; plus a
    toxic and a non-English one, which the evaluation set must leave out). Returns ``{source: path}``."""
    os.makedirs(folder, exist_ok=True)
    paths = {"strongreject_small": os.path.join(folder, "strongreject_small_dataset.csv")}
    pd.DataFrame([{"category": "Violence", "source": "custom", "forbidden_prompt": t} for t in harmful]).to_csv(
        paths["strongreject_small"], index=False
    )
    xs = [_xstest_row(i, t, "homonyms", "safe") for i, t in enumerate(ambiguous)]
    xs += [_xstest_row(1000 + i, t, "contrast_homonyms", "unsafe") for i, t in enumerate(harmful)]
    paths["xstest"] = _jsonl(os.path.join(folder, "xstest.jsonl"), xs)
    conversations = [(t, False, "English") for t in harmless] + [
        ("a toxic request that the evaluation set leaves out", True, "English"),
        ("une question en français", False, "French"),
    ]
    paths["wildchat"] = _jsonl(
        os.path.join(folder, "wildchat.jsonl"),
        [
            {
                "conversation": [{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}],
                "toxic": toxic,
                "language": language,
            }
            for t, toxic, language in conversations
        ],
    )
    return paths
