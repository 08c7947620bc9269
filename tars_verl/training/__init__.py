"""The driver side of a TARS run: config composition (``compose``), the ``--dry-run`` checks (``dry_run``) with
their GPU memory plan (``gpu_plan``) and multi-node checks (``multinode``), the SFT warm start (``sft``), verl's
``main_ppo`` with the scorers' environment on every node (``main_ppo``), and the ``tars`` trainer mode
(``trainer``, registered in verl's trainer registry). None of it runs inside a reward worker.
"""
