"""TARS in miniature on CPU: a tiny policy learns to refuse harmful requests and to answer the others.

    bash scripts/demo.sh                         # the whole recipe on CPU (docs/demo.md: timings, status)
    bash scripts/demo.sh --lam 1.0               # the paper's ablation: harmful prompts only
    bash scripts/demo.sh --reward-only           # the older demo: score fixed responses through the reward loop
    python -m tars_verl.learning_demo --out runs/demo --seed 1 --steps 16
    python -m tars_verl.learning_demo --out runs/demo_seeds --seeds 0 1 2 3 4   # + seeds.md: mean and worst seed

Each stage is the one a user runs on GPUs, with tiny settings (see ``docs/demo.md``):

1. data: the miniature world of :mod:`tars_verl.testing.tiny_task` written as the RL sources' own files, mixed
   by ``tars_verl.data.rl_mix`` at ratio ``--lam``; the evaluation sets built by ``tars_verl.data.eval_sets``
   from files in StrongREJECT's, XSTest's and WildChat's schemas, phrased with templates training never sees;
2. ``examples/run_tars_qwen7b.sh``: the SFT warm start (one refusing and one complying trace per prompt, so
   the warm start is undecided), then verl's GRPO with the ``tars`` reward manager and the ``tiny_learn``
   preset (refusing rewarded on harmful prompts, answering on harmless and ambiguous ones, both format-gated);
3. ``python -m tars_verl.eval`` on the warm start and the trained policy (sampling at the training temperature).

Prints one line per GRPO step; writes ``<out>/`` (replaced as a whole when the run completes): ``train.log``,
``steps.jsonl``, ``summary.json``, ``report.md`` (the before/after table), ``reward_per_step.png``,
``refusal_before_after.png`` and the evaluation's own ``eval/report.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pandas as pd

from tars_verl.data.files import read_json_file, write_text_atomic
from tars_verl.reward.prompt_type import PROMPT_TYPES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The evaluation sets and the prompt type each one measures in the miniature world.
EVAL_SETS = {"strongreject_small": "harmful", "wildchat_nontoxic": "harmless", "xstest_safe": "ambiguous"}
MAX_RESPONSE = 32  # the warm-start traces are 13-16 tokens: room to close </think> and stop, not to ramble
STEP_LINE = re.compile(r"\bstep:(\d+) - (.*)$")
NUMBER = re.compile(r"(?:np\.\w+\()?(-?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|nan|-?inf)\)?")


def parse_step_line(line: str) -> tuple[int, dict[str, float]] | None:
    """verl's console logger line ``step:N - key:value - ...`` as (N, {key: value}); None for other lines.

    >>> parse_step_line("step:3 - tars/harmful/refused/mean:np.float64(0.75) - critic/score/mean:0.5")
    (3, {'tars/harmful/refused/mean': 0.75, 'critic/score/mean': 0.5})
    >>> parse_step_line("epoch 1, step 3") is None
    True
    """
    m = STEP_LINE.search(line)
    if not m:
        return None
    metrics = {}
    for item in m.group(2).split(" - "):
        key, _, value = item.rpartition(":")
        num = NUMBER.fullmatch(value.strip())
        if key and num:
            metrics[key.strip()] = float(num.group(1))
    return int(m.group(1)), metrics


def step_summary(metrics: dict[str, float]) -> dict[str, float]:
    """The demo's per-step numbers from verl's metrics: mean reward, and reward / format / refusal per type."""
    out = {"reward": metrics.get("critic/score/mean", float("nan"))}
    for t in PROMPT_TYPES:
        for key, name in (("reward", "reward"), ("format", "format"), ("refused", "refused")):
            value = metrics.get(f"tars/{t}/{key}/mean")
            if value is not None:
                out[f"{t}/{name}"] = value
    return out


def format_step(step: int, s: dict[str, float]) -> str:
    parts = [f"step {step:3d}  reward {s['reward']:.2f}"]
    for t in PROMPT_TYPES:
        if f"{t}/reward" in s:
            parts.append(
                f"{t}: reward {s[f'{t}/reward']:.2f} format {s[f'{t}/format']:.2f} refuse {s[f'{t}/refused']:.2f}"
            )
    return "  |  ".join(parts)


VAL_SIZE = 4  # the mix's validation prompts (validation is off: verl only needs the file)


def mix_total(wanted: int, lam: float, harmful: int, others: int) -> int:
    """The RL mix's size: ``wanted``, or fewer when one side's share (``lam`` harmful, the rest harmless and
    ambiguous) would need more prompts than the tiny world has on that side (``--lam 1.0``: every prompt harmful).
    GRPO cycles through the mix, so its size changes how often a prompt recurs, not what is learned.

    >>> mix_total(240, 0.5, 224, 448), mix_total(240, 1.0, 224, 448), mix_total(240, 0.0, 224, 100)
    (240, 219, 95)
    """
    caps = [wanted]
    for share, pool in ((lam, harmful), (1.0 - lam, others)):
        if share > 0:
            caps.append(int(pool / share) - VAL_SIZE - 1)  # -1: the mix rounds each side's count up
    return min(caps)


# -- stage 1: data ---------------------------------------------------------------------------------------------
def prepare(work: str, seed: int, lam: float, args) -> dict[str, str]:
    from tars_verl.data.eval_sets import build_eval_sets
    from tars_verl.data.rl_mix import MixConfig, write_mixes
    from tars_verl.testing.source_files import write_typed_eval_sources, write_typed_sources
    from tars_verl.testing.tiny_task import ensure_tiny_policy, prompts, sft_rows, split_train_prompts

    policy = ensure_tiny_policy(os.path.join(work, "tiny_policy"), seed=seed)
    rl, sft = split_train_prompts(seed, args.sft_per_type)
    sources = write_typed_sources(os.path.join(work, "src"), rl["harmful"], rl["harmless"], rl["ambiguous"])
    # write_typed_sources deals the harmful prompts round-robin to these three sources: all of them are the pool.
    pools = {name: len(rl["harmful"][k::3]) for k, name in enumerate(("wildjailbreak", "rainbow_teaming", "aegis2"))}
    total = mix_total(args.mix_size, lam, len(rl["harmful"]), len(rl["harmless"]) + len(rl["ambiguous"]))
    write_mixes(
        MixConfig(lams=[lam], total=total, val_size=VAL_SIZE, paths=sources, pools=pools, seed=seed),
        os.path.join(work, "mix"),
    )
    rows = sft_rows(sft)
    os.makedirs(os.path.join(work, "sft"), exist_ok=True)
    pd.DataFrame(rows).sample(frac=1.0, random_state=seed).to_parquet(os.path.join(work, "sft", "train.parquet"))
    pd.DataFrame(rows[:8]).to_parquet(os.path.join(work, "sft", "val.parquet"))

    eval_sources = write_typed_eval_sources(
        os.path.join(work, "eval_src"),
        prompts("harmful", "eval"),
        prompts("harmless", "eval"),
        prompts("ambiguous", "eval"),
    )
    eval_dir = os.path.join(work, "eval_sets")
    os.makedirs(eval_dir, exist_ok=True)
    sets = build_eval_sets(eval_sources, only=list(EVAL_SETS), wildchat_n=len(prompts("harmless", "eval")))
    for name, df in sets.items():
        df.to_parquet(os.path.join(eval_dir, f"{name}.parquet"))
    return {"policy": policy, "mix": os.path.join(work, "mix"), "sft": os.path.join(work, "sft"), "eval": eval_dir}


# -- stage 2: the launch script ----------------------------------------------------------------------------------
def recipe_command(paths: dict[str, str], work: str, args) -> tuple[list[str], dict[str, str]]:
    from tars_verl.testing.cpu_platform import cpu_env, grpo_cpu_overrides, sft_cpu_overrides

    env = {
        **os.environ,
        **cpu_env(),
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
        # SFT warm start
        "MODEL_PATH": paths["policy"],
        "SFT_TRAIN": os.path.join(paths["sft"], "train.parquet"),
        "SFT_VAL": os.path.join(paths["sft"], "val.parquet"),
        "SFT_OUT": os.path.join(work, "sft_ckpt"),
        "NPROC_PER_NODE": "1",
        "SFT_BATCH": "8",
        "SFT_MICRO_BATCH": "8",
        "SFT_MAX_LENGTH": "128",
        "SFT_EPOCHS": str(args.sft_epochs),
        "SFT_LR": str(args.sft_lr),
        "SFT_PATIENCE": "100",  # the validation rows are training rows: its loss says nothing to stop on
        # GRPO
        "TRAIN_FILE": os.path.join(paths["mix"], "train.parquet"),
        "VAL_FILE": os.path.join(paths["mix"], "val.parquet"),
        "TARS_PRESET": "tiny_learn",
        "GPUS_PER_NODE": "1",
        "ROLLOUT_NAME": "tars_hf",
        "ROLLOUT_TP": "1",
        "TRAIN_BATCH": str(args.batch),
        "N_ROLLOUTS": str(args.rollouts),
        "MAX_PROMPT": "96",
        "MAX_RESPONSE": str(MAX_RESPONSE),
        "LR": str(args.lr),
        "EPOCHS": "100",  # the step count decides
        "TEMPERATURE": "1.0",
        "VAL_N": "1",
        "TEST_FREQ": "0",
        "SAVE_FREQ": str(args.steps),
        "CKPT_DIR": os.path.join(work, "grpo_ckpt"),
        "EXPERIMENT": "tars_demo",
    }
    env.pop("CUDA_VISIBLE_DEVICES", None)  # unset, not empty: Ray refuses the slot grpo_cpu_overrides declares
    cmd = [
        "bash",
        os.path.join(ROOT, "examples", "run_tars_qwen7b.sh"),
        *grpo_cpu_overrides(),
        f"trainer.total_training_steps={args.steps}",
        "trainer.val_before_train=False",
        f"data.seed={args.seed}",
        # Several PPO updates per step (the launch script makes one): the tiny policy learns in fewer CPU steps.
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.mini_batch}",
        "actor_rollout_ref.actor.checkpoint.save_contents=[model,hf_model]",
        "--sft",
        *sft_cpu_overrides(),
    ]
    return cmd, env


def train(paths: dict[str, str], work: str, args) -> list[dict]:
    """Run the launch script, streaming its log to ``work/train.log`` and a line per GRPO step to stdout."""
    cmd, env = recipe_command(paths, work, args)
    steps: list[dict] = []
    grpo = False
    with open(os.path.join(work, "train.log"), "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if "SFT warm start exported to" in line:
                grpo = True  # the SFT trainer prints step lines too
                print("[demo] warm start trained; GRPO starts", flush=True)
            parsed = parse_step_line(line) if grpo else None
            if parsed:
                step, metrics = parsed
                s = {"step": step, **step_summary(metrics)}
                steps.append(s)
                print(format_step(step, s), flush=True)
        rc = proc.wait()
    if rc != 0:
        with open(os.path.join(work, "train.log")) as f:
            tail = f.read()[-4000:]
        raise SystemExit(f"[demo] the launch script failed (exit {rc}); end of {work}/train.log:\n{tail}")
    if len(steps) != args.steps:
        raise SystemExit(f"[demo] expected {args.steps} GRPO step lines in {work}/train.log, found {len(steps)}")
    return steps


# -- stage 3: evaluation -----------------------------------------------------------------------------------------
def evaluate(models: dict[str, str], eval_dir: str, out: str, args) -> pd.DataFrame:
    """``python -m tars_verl.eval`` on ``models``; returns one row per model and prompt type."""
    cmd = [sys.executable, "-m", "tars_verl.eval", "--out", out, "--eval-dir", eval_dir]
    for name, path in models.items():
        cmd += ["--model", f"{name}={path}"]
    cmd += [
        "--safety-judge",
        "keywords",
        "--backend",
        "hf",
        "--temperature",
        "1.0",
        "--samples",
        str(args.eval_samples),
        "--max-new-tokens",
        str(MAX_RESPONSE),
        "--batch-size",
        "64",
        "--seed",
        str(args.seed),
        "--no-representations",
    ]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(os.path.join(os.path.dirname(out), "eval.log"), "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"[demo] the evaluation failed (exit {rc}); see {os.path.dirname(out)}/eval.log")
    return eval_table(out)


def eval_table(out: str) -> pd.DataFrame:
    """Per model and prompt type, from the evaluation's ``results.json`` and ``judged.parquet``: refusal rate,
    compliance, format (``</think>`` present) and mean reasoning tokens."""
    results = json.load(open(os.path.join(out, "results.json")))
    judged = pd.read_parquet(os.path.join(out, "judged.parquet"))
    rows = []
    for r in results["safety"]:
        if r["attack"] == "direct" and r["dataset"] in EVAL_SETS:
            rows.append({"model": r["model"], "type": EVAL_SETS[r["dataset"]], "refusal": r["dsr"]})
    for r in results["compliance"]:
        if r["dataset"] in EVAL_SETS:
            rows.append(
                {
                    "model": r["model"],
                    "type": EVAL_SETS[r["dataset"]],
                    "refusal": r["refusal"],
                    "compliance": r["compliance"],
                }
            )
    table = pd.DataFrame(rows)
    extra = (
        judged.assign(type=judged["dataset"].map(EVAL_SETS))
        .groupby(["model", "type"])
        .agg(
            n=("has_close_tag", "size"), format=("has_close_tag", "mean"), reasoning_tokens=("reasoning_tokens", "mean")
        )
        .reset_index()
    )
    return table.merge(extra, on=["model", "type"])


# -- what the user sees ------------------------------------------------------------------------------------------
def plot(steps: list[dict], table: pd.DataFrame, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for t in PROMPT_TYPES:
        xs = [s["step"] for s in steps if f"{t}/reward" in s]
        if xs:
            ax.plot(xs, [s[f"{t}/reward"] for s in steps if f"{t}/reward" in s], marker="o", label=t)
    ax.plot([s["step"] for s in steps], [s["reward"] for s in steps], "k--", label="all")
    ax.set(xlabel="GRPO step", ylabel="mean reward", ylim=(-0.02, 1.02), title="Reward per prompt type")
    ax.legend()
    fig.tight_layout()
    files.append(os.path.join(out, "reward_per_step.png"))
    fig.savefig(files[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.38
    for i, model in enumerate(("before", "after")):
        sub = table[table["model"] == model].set_index("type")
        values = [float(sub.loc[t, "refusal"]) if t in sub.index else float("nan") for t in PROMPT_TYPES]
        ax.bar([k + (i - 0.5) * width for k in range(len(PROMPT_TYPES))], values, width, label=model)
    ax.set_xticks(range(len(PROMPT_TYPES)), [f"{t}\n({s})" for s, t in zip(EVAL_SETS, PROMPT_TYPES)])
    ax.set(ylabel="refusal rate", ylim=(0, 1.02), title="Refusal before vs after GRPO (held-out phrasings)")
    ax.legend()
    fig.tight_layout()
    files.append(os.path.join(out, "refusal_before_after.png"))
    fig.savefig(files[-1], dpi=100)
    plt.close(fig)
    return files


def summarise(steps: list[dict], table: pd.DataFrame, args, seconds: float) -> dict:
    def cell(model, ptype, key):
        sub = table[(table["model"] == model) & (table["type"] == ptype)]
        return float(sub[key].iloc[0]) if len(sub) and key in sub and pd.notna(sub[key].iloc[0]) else None

    k = max(1, min(3, len(steps) // 3))  # first / last few steps, averaged (one step's sample is noisy)
    first, last = steps[:k], steps[-k:]

    def avg(rows, key):
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else None

    return {
        "seed": args.seed,
        "lam": args.lam,
        "steps": args.steps,
        "seconds": round(seconds, 1),
        "train": {
            "reward_first": avg(first, "reward"),
            "reward_last": avg(last, "reward"),
            **{f"{t}_refused_first": avg(first, f"{t}/refused") for t in PROMPT_TYPES},
            **{f"{t}_refused_last": avg(last, f"{t}/refused") for t in PROMPT_TYPES},
            "format_last": avg(last, "harmful/format"),
        },
        "eval": {
            model: {
                t: {key: cell(model, t, key) for key in ("refusal", "compliance", "format", "reasoning_tokens")}
                for t in PROMPT_TYPES
            }
            for model in ("before", "after")
        },
    }


def report(summary: dict, table: pd.DataFrame) -> str:
    lines = [
        f"# TARS in miniature: seed {summary['seed']}, lambda {summary['lam']}, {summary['steps']} GRPO steps",
        "",
        "Evaluation on held-out phrasings (python -m tars_verl.eval, keyword safety judge, XSTest string-match "
        "refusal judge, sampled at temperature 1.0):",
        "",
        "| prompt type (set) | refusal before | refusal after | compliance before | compliance after "
        "| format after | reasoning tokens before / after |",
        "|---|---|---|---|---|---|---|",
    ]
    ev = summary["eval"]
    for ptype, name in zip(PROMPT_TYPES, EVAL_SETS):
        b, a = ev["before"][ptype], ev["after"][ptype]

        def f(x):
            return "-" if x is None else f"{x:.2f}"

        lines.append(
            f"| {ptype} ({name}) | {f(b['refusal'])} | {f(a['refusal'])} | {f(b['compliance'])} | {f(a['compliance'])} "
            f"| {f(a['format'])} | {f(b['reasoning_tokens'])} / {f(a['reasoning_tokens'])} |"
        )
    tr = summary["train"]
    lines += [
        "",
        f"Training: mean reward {tr['reward_first']:.2f} (first steps) -> {tr['reward_last']:.2f} (last steps).",
    ]
    return "\n".join(lines) + "\n"


def seeds_table(summaries: list[dict]) -> str:
    """Markdown: per seed, the before -> after figures the demo promises, then mean and worst over the seeds.

    >>> one = {"seed": 0, "lam": 0.5, "seconds": 600.0, "train": {"reward_first": 0.4, "reward_last": 0.6},
    ...        "eval": {m: {t: {"refusal": r, "compliance": 1 - r, "format": 1.0} for t in ("harmful", "harmless",
    ...        "ambiguous")} for m, r in (("before", 0.1), ("after", 0.5))}}
    >>> print(seeds_table([one]).splitlines()[2])
    | 0 | 0.10 -> 0.50 (+0.40) | 0.90 -> 0.50 (-0.40) | 0.90 -> 0.50 (-0.40) | 1.00 | 0.40 -> 0.60 (+0.20) | 600 |
    """
    columns = [  # (header, model-level getter)
        ("refusal, harmful", lambda ev, m: ev[m]["harmful"]["refusal"]),
        ("compliance, harmless", lambda ev, m: ev[m]["harmless"]["compliance"]),
        ("compliance, ambiguous", lambda ev, m: ev[m]["ambiguous"]["compliance"]),
    ]
    lines = [
        "| seed | "
        + " | ".join(f"{h} (before -> after)" for h, _ in columns)
        + " | format after (min over types) | mean training reward (first -> last 3 steps) | seconds |",
        "|---" * (len(columns) + 4) + "|",
    ]
    deltas: list[list[float]] = []
    for s in summaries:
        ev, tr = s["eval"], s["train"]
        row, d = [], []
        for _, get in columns:
            b, a = get(ev, "before"), get(ev, "after")
            row.append(f"{b:.2f} -> {a:.2f} ({a - b:+.2f})")
            d.append(a - b)
        fmt = min(ev["after"][t]["format"] for t in PROMPT_TYPES)
        rise = tr["reward_last"] - tr["reward_first"]
        d += [fmt, rise]
        deltas.append(d)
        lines.append(
            f"| {s['seed']} | " + " | ".join(row) + f" | {fmt:.2f} | {tr['reward_first']:.2f} -> "
            f"{tr['reward_last']:.2f} ({rise:+.2f}) | {s['seconds']:.0f} |"
        )
    if len(summaries) > 1:
        mean = [sum(col) / len(col) for col in zip(*deltas)]
        worst = [min(col) for col in zip(*deltas)]
        for name, v in (("mean", mean), ("worst", worst)):
            lines.append(
                f"| {name} | "
                + " | ".join(f"{x:+.2f}" for x in v[: len(columns)])
                + f" | {v[-2]:.2f} | {v[-1]:+.2f} | |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="runs/demo", help="run folder (replaced as a whole when the run completes)")
    # Seed 1: seed 0's warm start barely reasons on held-out phrasings, and its GRPO runs differ widely (docs/demo.md).
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lam", type=float, default=0.5, help="share of harmful prompts in the RL mix (paper: 0.5)")
    ap.add_argument("--steps", type=int, default=40, help="GRPO steps")
    ap.add_argument("--batch", type=int, default=24, help="prompts per GRPO step")
    ap.add_argument("--rollouts", type=int, default=4, help="samples per prompt (the GRPO group)")
    ap.add_argument("--lr", type=float, default=5e-4, help="GRPO learning rate")
    ap.add_argument(
        "--mini-batch", type=int, default=24, help="prompts per PPO update (--batch / this = updates per step)"
    )
    ap.add_argument("--mix-size", type=int, default=240, help="prompts in the RL mix")
    ap.add_argument("--sft-per-type", type=int, default=16, help="warm-start prompts per type (x2 traces)")
    ap.add_argument("--sft-epochs", type=int, default=2)
    # Gentle: the base model already writes both traces; a large SFT step re-learns them and loses the structure
    # GRPO needs (measured: at 5e-3 the warm start refused 80% of harmless prompts and GRPO collapsed in one step).
    ap.add_argument("--sft-lr", type=float, default=1e-4)
    ap.add_argument("--eval-samples", type=int, default=2, help="samples per evaluation prompt")
    ap.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="run each seed into <out>/seed_<N> (a seed with a finished run is kept: rerun to resume) and write "
        "<out>/seeds.md, the per-seed table with mean and worst (docs/demo.md's measurement)",
    )
    args = ap.parse_args(argv)
    if not 0.0 <= args.lam <= 1.0:
        ap.error(f"--lam {args.lam} is outside [0, 1]")
    if args.seeds:
        return run_seeds(args)
    return run(args)


def run_seeds(args) -> dict:
    """``run`` for each of ``args.seeds``; returns {seed: summary} and writes ``<out>/seeds.md``."""
    out = os.path.abspath(args.out)
    summaries = {}
    for seed in args.seeds:
        folder = os.path.join(out, f"seed_{seed}")
        done = os.path.join(folder, "summary.json")
        if os.path.exists(done):  # a finished seed (its folder is only ever written whole)
            summaries[seed] = read_json_file(done, "demo summary")
            kept = {k: summaries[seed].get(k) for k in ("lam", "steps")}
            if kept != {"lam": args.lam, "steps": args.steps}:
                raise SystemExit(
                    f"[demo] {done}: a finished run with {kept}, not lambda {args.lam} and {args.steps} steps: "
                    "use another --out (or delete that folder to run it again)"
                )
            print(f"[demo] seed {seed}: kept the finished run in {folder}", flush=True)
            continue
        summaries[seed] = run(argparse.Namespace(**{**vars(args), "seed": seed, "out": folder, "seeds": None}))
    text = f"# TARS in miniature: lambda {args.lam}, {args.steps} GRPO steps, seeds {args.seeds}\n\n"
    text += seeds_table([summaries[s] for s in args.seeds])
    write_text_atomic(text, os.path.join(out, "seeds.md"))
    print(text)
    return summaries


def run(args) -> dict:
    """One demo run (one seed) into ``args.out``; returns its summary."""
    start = time.time()
    out = os.path.abspath(args.out)
    work = f"{out}.partial"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    print(f"[demo] seed {args.seed}, lambda {args.lam}: building the tiny world in {work}", flush=True)
    paths = prepare(work, args.seed, args.lam, args)
    print("[demo] SFT warm start, then GRPO, through examples/run_tars_qwen7b.sh", flush=True)
    steps = train(paths, work, args)
    with open(os.path.join(work, "steps.jsonl"), "w") as f:
        f.writelines(json.dumps(s) + "\n" for s in steps)
    trained = os.path.join(work, "grpo_ckpt", f"global_step_{args.steps}", "actor", "huggingface")
    print("[demo] evaluating the warm start (before) and the trained policy (after)", flush=True)
    table = evaluate(
        {"before": os.path.join(work, "sft_ckpt", "hf_best"), "after": trained},
        paths["eval"],
        os.path.join(work, "eval"),
        args,
    )
    summary = summarise(steps, table, args, time.time() - start)
    plot(steps, table, work)
    text = report(summary, table)
    with open(os.path.join(work, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    for sub in ("src", "eval_src"):  # rebuilt from the seed; the mix and the evaluation sets stay
        shutil.rmtree(os.path.join(work, sub), ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(work, out)
    print(text)
    print(f"[demo] done in {time.time() - start:.0f} s: {out}/report.md, reward_per_step.png, refusal_before_after.png")
    return summary


if __name__ == "__main__":
    main()
