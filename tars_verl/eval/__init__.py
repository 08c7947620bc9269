"""The paper's evaluation: generation (transformers, vLLM, OpenAI-compatible), judges, metrics and the report.

Run it with ``python -m tars_verl.evaluate --help``.
"""
