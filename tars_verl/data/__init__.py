"""Data preparation: RL prompt mixes, SFT traces and evaluation sets as verl parquet files.

The command-line entry points live in ``data_prep/`` at the repository root (thin wrappers around
``rl_mix.main``, ``sft_traces.main`` and ``eval_sets.main``).
"""
