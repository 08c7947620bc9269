"""The evaluation report: ``results.json``, ``report.md`` and PNG plots (matplotlib, no display needed)."""

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
        _md_table(
            tables["safety"],
            ["model", "dataset", "attack", "n", "dsr", "dsr_lo", "dsr_hi", "format_survival", "dsr_when_formatted"],
        ),
        *(
            [
                "## Defense success rate per attack, adaptive or transferred (HarmBench)\n",
                "adaptive: generated against this model; transfer: made against another model (imported sets); "
                "model-agnostic: the same test cases for every model (PAP); mean: over the attacks listed, its "
                "interval the mean of their 95% Wilson bounds.\n",
                _md_table(tables["attacks"], ["model", "attack", "kind", "n", "dsr", "dsr_lo", "dsr_hi"]),
            ]
            if not tables.get("attacks", empty).empty
            else []
        ),
        "## Compliance on harmless prompts\n",
        _md_table(tables["compliance"], ["model", "dataset", "n", "compliance", "compliance_lo", "compliance_hi"]),
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


def write_text_atomic(text: str, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
