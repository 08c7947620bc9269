"""What verl imports inside a reward worker (every Ray process that scores): the ``tars`` reward manager
(``manager``), its ``reward.tars`` settings (``config``), the ``<think>`` response format (``response_format``),
the micro-batcher in front of each scorer (``batching``), the reward-log schema (``log_schema``) and the
per-prompt-type metrics read from it (``per_type_metrics``).

Nothing here may import ``tars_verl.training`` or ``tars_verl.eval`` (driver-side code, heavier imports):
``tests/test_layout_on_cpu.py`` checks it. This file imports nothing, so importing one module does not load
the others.
"""
