"""Import precomputed attack sets as HarmBench test-case files, recorded as TRANSFER attacks (made against another
model), for ``python -m tars_verl.eval --attack NAME=FILE`` beside the adaptive ones.

    python -m tars_verl.eval.attack.importers harmbench HarmBench/results/GCG/llama2_7b/test_cases/test_cases.json \\
        --source-model llama2_7b --out cases/gcg_transfer_llama2.json
    python -m tars_verl.eval.attack.importers jailbreakbench artifacts/PAIR/black_box/vicuna-13b-v1.5.json \\
        --out cases/jbb_pair_vicuna.json        # also writes cases/jbb_pair_vicuna.behaviors.csv

- ``harmbench``: HarmBench's test cases of any method: a ``test_cases.json`` (``{BehaviorID: [test case, ...]}``),
  a ``test_cases_individual_behaviors/`` folder (``<BehaviorID>/test_cases.json`` each), or a completions file
  (``{BehaviorID: [{"test_case": ..., "generation": ...}, ...]}``; the generations are dropped).
- ``jailbreakbench``: a JailbreakBench artifact (``{"parameters": {"method", "model", ...}, "jailbreaks": [{"index",
  "goal", "behavior", "category", "prompt", ...}]}``). Its behaviours are JailbreakBench's, not HarmBench's, so a
  behaviours file in HarmBench's columns is written beside the cases (``BehaviorID`` ``jbb_<index>``, ``Behavior``
  = the goal) for ``--behaviors``; entries without a prompt (the attack submitted none) are skipped and counted.

Each import writes ``<out>`` and ``<out stem>.meta.json`` (``kind: imported``, the source file and the model the
cases were made against), which the evaluation report reads to label the attack as transferred.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import pandas as pd

from tars_verl.data.files import describe_value, write_together
from tars_verl.eval.attack.runner import sidecar, work_dir
from tars_verl.redaction import entry_point


def _load_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _cases_of(bid: str, value, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for k, item in enumerate(items):
        if isinstance(item, dict):  # a completions file: {"test_case": ..., "generation": ...}
            item = item.get("test_case")
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{where}: BehaviorID {bid!r} test case {k} is {describe_value(item)}, not text")
        out.append(item)
    if not out:
        raise ValueError(f"{where}: BehaviorID {bid!r} has no test cases")
    return out


def read_harmbench_cases(path: str) -> dict[str, list[str]]:
    """HarmBench test cases from a test-case / completions JSON or a ``test_cases_individual_behaviors`` folder."""
    if os.path.isdir(path):
        cases = {}
        for bid in sorted(os.listdir(path)):
            file = os.path.join(path, bid, "test_cases.json")
            if not os.path.isfile(file):
                continue
            data = _load_json(file)
            if not isinstance(data, dict):
                raise ValueError(f"{file}: expected {{BehaviorID: [test cases]}}")
            for key, value in data.items():
                cases[str(key)] = _cases_of(str(key), value, file)
        if not cases:
            raise ValueError(
                f"{path}: no <BehaviorID>/test_cases.json inside (HarmBench's test_cases_individual_behaviors layout)"
            )
        return cases
    data = _load_json(path)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a JSON object {{BehaviorID: [test cases]}}")
    return {str(bid): _cases_of(str(bid), value, path) for bid, value in data.items()}


def read_jailbreakbench(path: str) -> tuple[dict[str, list[str]], pd.DataFrame, dict, int]:
    """(cases, behaviours in HarmBench's columns, the artifact's parameters, entries skipped without a prompt)."""
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("jailbreaks"), list):
        raise ValueError(f"{path}: not a JailbreakBench artifact (expected {{'parameters': ..., 'jailbreaks': [...]}})")
    params = data.get("parameters") or {}
    cases, rows, skipped = {}, [], 0
    for k, jb in enumerate(data["jailbreaks"]):
        if not isinstance(jb, dict) or "index" not in jb or not isinstance(jb.get("goal"), str):
            raise ValueError(f"{path}: jailbreaks[{k}] needs an index and a goal")
        bid = f"jbb_{jb['index']}"
        if bid in cases or any(r["BehaviorID"] == bid for r in rows):
            raise ValueError(f"{path}: jailbreaks[{k}]: index {jb['index']} appears twice")
        rows.append(
            {
                "Behavior": jb["goal"],
                "FunctionalCategory": "standard",
                "SemanticCategory": str(jb.get("category") or ""),
                "Tags": f"jailbreakbench,{jb.get('behavior') or ''}",
                "ContextString": "",
                "BehaviorID": bid,
            }
        )
        prompt = jb.get("prompt")
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            skipped += 1
            continue
        if not isinstance(prompt, str):
            raise ValueError(f"{path}: jailbreaks[{k}].prompt is {describe_value(prompt)}, not text")
        cases[bid] = [prompt]
    if not cases:
        raise ValueError(f"{path}: no jailbreak has a prompt")
    return cases, pd.DataFrame(rows), params, skipped


def _meta(fmt: str, src: str, method: str, source_model: str, n: int, extra: dict | None = None) -> dict:
    return {
        "kind": "imported",
        "format": fmt,
        "source": os.path.abspath(src),
        "method": method,
        "source_model": source_model,
        "adaptive": False,
        "behaviors": n,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **(extra or {}),
    }


def import_harmbench(src: str, out: str, method: str = "", source_model: str = "") -> dict:
    cases = read_harmbench_cases(src)
    if not out.endswith(".json"):
        raise ValueError(f"--out {out}: give the test-case file to write, ending in .json")
    meta = _meta("harmbench", src, method, source_model, len(cases))
    write_together({out: cases, sidecar(out, "meta"): meta})
    return meta


def import_jailbreakbench(src: str, out: str) -> dict:
    cases, behaviors, params, skipped = read_jailbreakbench(src)
    if not out.endswith(".json"):
        raise ValueError(f"--out {out}: give the test-case file to write, ending in .json")
    behaviors_csv = f"{work_dir(out)}.behaviors.csv"
    meta = _meta(
        "jailbreakbench",
        src,
        str(params.get("method", "")),
        str(params.get("model", "")),
        len(cases),
        {
            "skipped_without_prompt": skipped,
            "behaviors_file": os.path.abspath(behaviors_csv),
            "attack_type": params.get("attack_type"),
        },
    )
    write_together({out: cases, sidecar(out, "meta"): meta})
    tmp = f"{behaviors_csv}.tmp-{os.getpid()}"
    behaviors.to_csv(tmp, index=False)
    os.replace(tmp, behaviors_csv)
    return meta


@entry_point
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m tars_verl.eval.attack.importers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("format", choices=["harmbench", "jailbreakbench"])
    ap.add_argument("source", help="the precomputed file (or HarmBench test_cases_individual_behaviors folder)")
    ap.add_argument("--out", required=True, help="test-case file to write (cases/NAME.json)")
    ap.add_argument("--method", default="", help="harmbench: the method that made them (GCG, PAIR, ...)")
    ap.add_argument("--source-model", default="", help="harmbench: the model they were made against")
    args = ap.parse_args(argv)
    if args.format == "harmbench":
        meta = import_harmbench(args.source, args.out, args.method, args.source_model)
    else:
        meta = import_jailbreakbench(args.source, args.out)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
