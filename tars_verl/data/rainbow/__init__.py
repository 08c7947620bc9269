"""Rainbow Teaming (Samvelyan et al. 2024, arXiv 2402.16822) against your own warm start: the TARS recipe's
adversarial RL prompts, generated rather than borrowed.

- :mod:`~tars_verl.data.rainbow.search`: the MAP-Elites loop (:func:`run_rainbow`, :class:`RainbowConfig`);
- :mod:`~tars_verl.data.rainbow.archive`: the grid, its sampling, BLEU, the TARS authors' file format;
- :mod:`~tars_verl.data.rainbow.descriptors`: risk categories and attack styles (the paper's 10 x the authors' 12);
- :mod:`~tars_verl.data.rainbow.prompts`: the mutator's and judge's prompts (the project's own, or a file);
- :mod:`~tars_verl.data.rainbow.sweep`: several seeds / targets, on Ray when there is a cluster;
- :mod:`~tars_verl.data.rainbow.cli`: ``python data_prep/build_rainbow_archive.py``.

Documentation: ``docs/rainbow_teaming.md``.
"""

from tars_verl.data.rainbow.archive import Archive, Elite, bleu_similarity
from tars_verl.data.rainbow.search import ModelEndpoint, RainbowConfig, RainbowError, RunSummary, run_rainbow
from tars_verl.data.rainbow.sweep import run_sweep

__all__ = [
    "Archive",
    "Elite",
    "ModelEndpoint",
    "RainbowConfig",
    "RainbowError",
    "RunSummary",
    "bleu_similarity",
    "run_rainbow",
    "run_sweep",
]
