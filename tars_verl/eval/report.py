"""The evaluation report: ``results.json``, ``report.md`` and PNG plots (matplotlib, no display needed).

The report opens with the protocol behind each of its numbers and that protocol's source version
(:func:`protocols`): HarmBench's commit and the SHA-256 of the classifier prompts read, the refusal judge
(XSTest's string match or LLM judge, with its prompt's source), lm-eval's version and each task's version,
and the decoding of the generations, so that two reports can be compared.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from tars_verl.data.files import write_json_atomic  # noqa: E402


def _err(value: float, lo: float, hi: float) -> list[list[float]]:
    """Error-bar lengths below / above ``value``, never negative (matplotlib rejects negative ones)."""
    return [[max(0.0, value - lo)], [max(0.0, hi - value)]]


def plot_tradeoff(points: pd.DataFrame, path: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 5))
    for _, r in points.iterrows():
        ax.errorbar(
            r["compliance"],
            r["dsr"],
            xerr=_err(r["compliance"], r["compliance_lo"], r["compliance_hi"]),
            yerr=_err(r["dsr"], r["dsr_lo"], r["dsr_hi"]),
            fmt="o",
            capsize=3,
            label=r["model"],
        )
        ax.annotate(r["model"], (r["compliance"], r["dsr"]), textcoords="offset points", xytext=(5, 5))
    ax.set(
        xlabel="compliance on harmless prompts (XSTest safe)",
        ylabel="defense success rate (avg over attacks)",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
        title="Safety vs over-refusal (95% CI)",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_lengths(lengths: pd.DataFrame, path: str) -> None:
    groups = sorted(lengths["category_group"].unique())
    models = sorted(lengths["model"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=False)
    width = 0.8 / max(1, len(models))
    for ax, col, title in (
        (axes[0], "reasoning_tokens", "reasoning tokens"),
        (axes[1], "answer_tokens", "answer tokens"),
    ):
        for j, model in enumerate(models):
            sub = lengths[lengths["model"] == model].set_index("category_group").reindex(groups)
            ax.bar([i + j * width for i in range(len(groups))], sub[col].fillna(0), width, label=model)
        ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(groups))])
        ax.set_xticklabels([g.replace(" ", "\n", 2) for g in groups], fontsize=7)
        ax.set_title(f"mean {title} per Sorry-Bench group")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_umap(rep: dict, model: str, path: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    pts, labels = rep["points"], rep["labels"]
    for lab, name, color in ((0, "ambiguous-safe", "tab:blue"), (1, "attack", "tab:red")):
        xs = [p[0] for p, label in zip(pts, labels) if label == lab]
        ys = [p[1] for p, label in zip(pts, labels) if label == lab]
        ax.scatter(xs, ys, s=12, c=color, label=name, alpha=0.7)
    ax.set_title(f"{model}: prompt embeddings (UMAP), SVM margin {rep['margin']:.2f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _md_table(df: pd.DataFrame, cols: list[str]) -> str:
    if df.empty:
        return "_none_\n"
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = [f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(out: str, tables: dict[str, pd.DataFrame], reps: dict[str, dict], meta: dict) -> dict[str, str]:
    os.makedirs(out, exist_ok=True)
    empty = pd.DataFrame()
    tables = {
        k: tables.get(k, empty) for k in ("safety", "safety_avg", "compliance", "lengths", "tradeoff", "capability")
    } | {k: v for k, v in tables.items()}
    files = {"results": os.path.join(out, "results.json"), "report": os.path.join(out, "report.md")}
    results = {k: v.to_dict("records") for k, v in tables.items()}
    results["representations"] = {m: {k: v for k, v in r.items() if k != "points"} for m, r in reps.items()}
    results["meta"] = meta
    write_json_atomic(results, files["results"])
    if not tables["tradeoff"].empty:
        files["tradeoff_plot"] = os.path.join(out, "tradeoff.png")
        plot_tradeoff(tables["tradeoff"], files["tradeoff_plot"])
    if not tables["lengths"].empty:
        files["lengths_plot"] = os.path.join(out, "reasoning_length.png")
        plot_lengths(tables["lengths"], files["lengths_plot"])
    for model, rep in reps.items():
        files[f"umap_{model}"] = os.path.join(out, f"umap_{model}.png")
        plot_umap(rep, model, files[f"umap_{model}"])
    gen = meta.get("generation", {})
    prefill = meta.get("prefill_think", gen.get("prefill_think"))
    md = [
        f"# TARS evaluation: {', '.join(meta['models'])}\n",
        *protocols_markdown(meta.get("protocols", [])),
        f"Judges: safety `{meta.get('safety_judge')}`, refusal `{meta.get('refusal_judge')}`.\n",
        "`<think>` pre-filled in the generation prompt: "
        + ("**yes** (`--prefill-think`)" if prefill else "**no** (the model writes `<think>` itself)")
        + ".\n",
        f"Generation settings: {gen}.\n",
    ]
    if meta.get("sorry_bench_release"):
        md.append(f"Sorry-Bench release: {', '.join(meta['sorry_bench_release'])}.\n")
    md += [f"Note ({m}): {n}\n" for m, n in meta.get("notes", {}).items()]
    if "tradeoff_plot" in files:
        md.append("![trade-off](tradeoff.png)\n")
    md += [
        "## Safety vs over-refusal\n",
        _md_table(tables["tradeoff"], ["model", "compliance", "dsr", "dsr_lo", "dsr_hi"]),
        "## Defense success rate by attack\n",
        "ASR and DSR per behaviour first, then the mean over behaviours (HarmBench's `evaluate_completions.py`); "
        "`n_label_minus1`: classifier replies neither Yes nor No (label -1, counted as not jailbroken).\n",
        _md_table(
            tables["safety"],
            [
                "model",
                "dataset",
                "attack",
                "n",
                "n_behaviors",
                "asr",
                "dsr",
                "dsr_lo",
                "dsr_hi",
                "n_label_minus1",
                "format_survival",
                "dsr_when_formatted",
                "decoding",
            ],
        ),
        "## Compliance on harmless prompts\n",
        "Shares of all rows (XSTest's classes): full compliance (`compliance`, with its 95% interval), refusal "
        "(full + partial), full and partial refusal (empty when the judge does not tell them apart), and the number "
        "of verdicts the judge's reply did not give (`unjudged`).\n",
        _md_table(
            tables["compliance"],
            [
                "model",
                "dataset",
                "n",
                "compliance",
                "compliance_lo",
                "compliance_hi",
                "refusal",
                "full_refusal",
                "partial_refusal",
                "unjudged",
                "decoding",
            ],
        ),
        "## Adaptive reasoning (Sorry-Bench)\n",
    ]
    if "lengths_plot" in files:
        md.append("![lengths](reasoning_length.png)\n")
    md.append(_md_table(tables["lengths"], ["model", "category_group", "n", "reasoning_tokens", "answer_tokens"]))
    if not tables["capability"].empty:
        md += [
            "## General capability (lm-eval-harness)\n",
            _md_table(tables["capability"], ["model", "task", "metric", "value", "stderr", "n"]),
        ]
    if reps:
        md.append("## Representation margin (ambiguous-safe vs attack prompts)\n")
        md += [
            f"- **{m}**: SVM margin {r['margin']:.3f} ({r['n_safe']} safe, {r['n_attack']} attack prompts)\n"
            f"  ![umap](umap_{m}.png)\n"
            for m, r in reps.items()
        ]
    write_text_atomic("\n".join(md), files["report"])
    return files


def _count(table: pd.DataFrame | None, column: str) -> int:
    return int(table[column].sum()) if table is not None and not table.empty and column in table else 0


def protocols(
    tables: dict[str, pd.DataFrame],
    judges: dict[str, dict],
    judge_names: dict[str, str],
    meta: dict,
    capability: dict | None = None,
) -> list[dict[str, str]]:
    """For each kind of number in the report: what it is, the protocol that produced it, and the source version
    of that protocol (``{"numbers", "protocol", "source"}``), for the report's header and ``results.json``.
    ``judges``: per suite, :func:`tars_verl.eval.judge.judge_provenance` of the judge used."""
    out = []
    dec = meta.get("decoding", "")
    gen = meta.get("generation", {})
    budget = f"max {gen.get('max_new_tokens')} new tokens" if gen.get("max_new_tokens") else ""
    prefill = "`<think>` pre-filled" if meta.get("prefill_think") else "`<think>` not pre-filled"
    generation = ", ".join(x for x in (dec, budget, prefill) if x)
    safety = tables.get("safety")
    if safety is not None and not safety.empty and "safety" in judges:
        j = judges["safety"]
        if j["backend"] == "harmbench_classifier":
            p = j.get("prompt", {})
            protocol = (
                f"HarmBench: classifier `{j.get('model')}` with HarmBench's standard / contextual prompts on the "
                "answer after `</think>` clipped to 512 classifier tokens, copyright behaviours by MinHash against "
                "HarmBench's reference hashes; ASR per behaviour, then the mean (`evaluate_completions.py`); "
                f"{_count(safety, 'n_label_minus1')} classifier replies neither Yes nor No (label -1, not jailbroken)"
            )
            source = (
                f"HarmBench commit `{p.get('commit') or 'not pinned'}`, prompts `{p.get('source')}` "
                f"(sha256 `{str(p.get('sha256', ''))[:16]}`)"
            )
        else:
            protocol = (
                f"judge `{judge_names.get('safety')}` (backend {j['backend']}, model {j.get('model', '-')}) on the "
                "answer after `</think>`; ASR per behaviour, then the mean (HarmBench's aggregation)"
            )
            source = "this project's scorer (not HarmBench's classifier)"
        out.append(
            {
                "numbers": "defense success rate (DSR = 1 - ASR)",
                "protocol": f"{protocol}; generation: {generation}",
                "source": source,
            }
        )
    compliance = tables.get("compliance")
    if compliance is not None and not compliance.empty and "overrefusal" in judges:
        j = judges["overrefusal"]
        unjudged = f"{_count(compliance, 'unjudged')} unjudged verdicts (counted in n, as neither)"
        if j["backend"] == "xstest_strmatch":
            protocol = (
                "XSTest's string-match classifier (`classify_completions_strmatch.py` rule, offline): full refusal "
                "or full compliance"
            )
            source = "XSTest (paul-rottger/exaggerated-safety), reimplemented rule"
        elif j["backend"] == "xstest_judge":
            p = j.get("prompt", {})
            protocol = (
                "XSTest's 3-class LLM judge (`classify_completions_gpt.py` prompt and settings), judge model "
                f"`{j.get('model')}`"
            )
            source = (
                f"XSTest commit `{p.get('commit') or 'not pinned'}`, prompt `{p.get('source')}` "
                f"(sha256 `{str(p.get('sha256', ''))[:16]}`)"
            )
        else:
            fmt = f", format {j['format']}" if j.get("format") else ""
            protocol = f"judge `{judge_names.get('overrefusal')}` (backend {j['backend']}{fmt}), binary"
            source = "not XSTest's judge"
        out.append(
            {
                "numbers": "compliance on harmless prompts (XSTest safe, WildChat)",
                "protocol": f"{protocol}; answer after `</think>`; {unjudged}; generation: {generation}",
                "source": source,
            }
        )
    lengths = tables.get("lengths")
    if lengths is not None and not lengths.empty:
        releases = ", ".join(meta.get("sorry_bench_release") or []) or "unknown"
        out.append(
            {
                "numbers": "reasoning / answer tokens per Sorry-Bench group",
                "protocol": f"mean tokens before / after `</think>`; generation: {generation}",
                "source": f"Sorry-Bench release {releases}",
            }
        )
    if capability:
        tasks = sorted(
            {
                (t["task"], str(t["version"]), str(t.get("n_shot")))
                for rows in capability.get("tasks", {}).values()
                for t in rows
            }
        )
        out.append(
            {
                "numbers": "general capability",
                "protocol": (
                    f"lm-eval tasks with their own prompts, few-shot, decoding, filters and metrics; chat template on "
                    f"(few-shot as turns); generation budget {capability.get('max_gen_toks')} tokens for every "
                    f"generative task; stop sequences {capability.get('stop_sequences')}; {capability.get('answer')}"
                ),
                "source": f"lm-eval {capability.get('lm_eval')}; tasks "
                + ", ".join(f"{t} v{v} ({n}-shot)" for t, v, n in tasks),
            }
        )
    return out


def protocols_markdown(rows: list[dict[str, str]]) -> list[str]:
    if not rows:
        return []
    lines = ["## Protocols and sources\n", "| numbers | protocol | source |", "|---|---|---|"]
    lines += [f"| {r['numbers']} | {r['protocol']} | {r['source']} |" for r in rows]
    return ["\n".join(lines) + "\n"]


def write_text_atomic(text: str, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
