"""The paper's evaluation: generation (transformers, vLLM, OpenAI-compatible), judges, metrics and the report.

Run it with ``python -m tars_verl.eval --help`` (the same as the ``tars-evaluate`` console script; the command
line is ``tars_verl.eval.cli``).
"""
