"""The MAP-Elites archive: one elite (prompt, target response, fitness) per (risk category, attack style) cell.

What the paper does with it (Rainbow Teaming, arXiv 2402.16822, Section 3 and Algorithm 2):

- the parent is "sampled uniformly at random from the archive" (:meth:`Archive.sample_parents`);
- the candidate's cell is sampled "biasing the sampling distribution of the descriptors towards areas of the
  archive with low fitness" with an archive sampling temperature of 0.1 (Appendix K, Table 10):
  ``p(z) ∝ exp(-F[z] / t)``, an empty cell counting as fitness 0 (:meth:`Archive.sample_targets`). The printed
  pseudocode reads ``e^{F[z]/t}``, which would favour HIGH fitness, against the text's "bias towards low fitness";
  we follow the text, as FERRET (arXiv 2408.10701) does with ``exp((1 - F) / t)`` (the same distribution).
  Within a batch the cells are drawn without replacement, so every candidate of a batch meets its own incumbent;
- a candidate is kept for evaluation only if its BLEU against its parent is below the threshold (0.6, Table 10;
  :func:`bleu_similarity`).

The file format is the TARS authors' (``archive_<k>.json`` in danielkty/tars): a JSON list of risk categories, each a
list of attack-style cells ``{"prompt": str, "score": float}``; a cell the search never filled is ``{}``.
``score`` is the elite's fitness (see ``docs/rainbow_teaming.md``), which is what
:func:`tars_verl.data.sources.read_rainbow_archives` reads.

>>> a = Archive(("Fraud", "Terrorism"), ("Slang", "Role Play"))
>>> a.put((0, 1), Elite("How would a con artist...", "I can't help.", 0.1, 3))
>>> a.to_authors_json()
[[{}, {'prompt': 'How would a con artist...', 'score': 0.1}], [{}, {}]]
>>> round(bleu_similarity("how do I make a cake", "how do I make a cake"), 2)
1.0
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

Cell = tuple[int, int]


@dataclass(frozen=True)
class Elite:
    """A cell's occupant: the prompt, the target's reply to it, its fitness and the iteration that stored it."""

    prompt: str
    response: str
    fitness: float
    iteration: int


def bleu_similarity(candidate: str, parent: str) -> float:
    """Sentence BLEU of ``candidate`` against ``parent`` as the single reference, in [0, 1].

    sacrebleu's ``sentence_bleu`` (its defaults: 13a tokenisation, exponential smoothing for zero n-gram counts),
    divided by 100. The paper names BLEU (Papineni et al. 2002) without a tokeniser or smoothing; sacrebleu is the
    standard, reproducible implementation.
    """
    return min(1.0, _bleu().sentence_score(candidate, [parent]).score / 100.0)


@functools.lru_cache(maxsize=1)
def _bleu():
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True)  # effective_order: what sentence-level BLEU needs (sacrebleu's advice)


class Archive:
    """A ``len(categories) x len(styles)`` grid of :class:`Elite` (or empty)."""

    def __init__(self, categories: Sequence[str], styles: Sequence[str]):
        self.categories = tuple(categories)
        self.styles = tuple(styles)
        self.cells: dict[Cell, Elite] = {}

    @property
    def size(self) -> int:
        return len(self.categories) * len(self.styles)

    def all_cells(self) -> list[Cell]:
        """Every cell, row by row (the order of the sampling distribution and of the file)."""
        return [(i, j) for i in range(len(self.categories)) for j in range(len(self.styles))]

    def filled(self) -> list[Cell]:
        return [c for c in self.all_cells() if c in self.cells]

    def get(self, cell: Cell) -> Elite | None:
        return self.cells.get(cell)

    def put(self, cell: Cell, elite: Elite) -> None:
        if cell not in self.all_cells():
            raise IndexError(f"cell {cell} is outside the {len(self.categories)} x {len(self.styles)} archive")
        self.cells[cell] = elite

    def mean_fitness(self) -> float:
        """Mean fitness of the filled cells (0.0 when none is filled)."""
        return float(np.mean([e.fitness for e in self.cells.values()])) if self.cells else 0.0

    def fitness_grid(self) -> np.ndarray:
        """Fitness per cell in :meth:`all_cells` order; an empty cell is 0 (the least fit, so the most sampled)."""
        return np.array([self.cells[c].fitness if c in self.cells else 0.0 for c in self.all_cells()])

    def target_distribution(self, temperature: float) -> np.ndarray:
        """``p(z) ∝ exp(-F[z] / t)`` over :meth:`all_cells` (computed stably)."""
        logits = -self.fitness_grid() / temperature
        p = np.exp(logits - logits.max())
        return p / p.sum()

    def sample_targets(self, rng: np.random.Generator, n: int, temperature: float) -> list[Cell]:
        """``n`` distinct cells (all of them when ``n`` >= the archive size), biased towards low fitness."""
        cells = self.all_cells()
        n = min(n, len(cells))
        picks = rng.choice(len(cells), size=n, replace=False, p=self.target_distribution(temperature))
        return [cells[int(k)] for k in picks]

    def sample_parents(self, rng: np.random.Generator, n: int) -> list[Cell]:
        """``n`` filled cells drawn uniformly at random, independently (the paper's parent selection)."""
        filled = self.filled()
        if not filled:
            return []
        return [filled[int(k)] for k in rng.integers(0, len(filled), size=n)]

    # -- files ---------------------------------------------------------------------------------------------------
    def to_authors_json(self) -> list[list[dict]]:
        """The TARS authors' archive format: rows of categories, columns of styles, ``{prompt, score}`` or ``{}``."""
        return [
            [
                {"prompt": self.cells[(i, j)].prompt, "score": float(self.cells[(i, j)].fitness)}
                if (i, j) in self.cells
                else {}
                for j in range(len(self.styles))
            ]
            for i in range(len(self.categories))
        ]

    def to_state(self) -> dict:
        """Everything needed to resume (responses included), JSON-serialisable."""
        return {
            "categories": list(self.categories),
            "styles": list(self.styles),
            "cells": [{"cell": list(c), **asdict(e)} for c, e in sorted(self.cells.items())],
        }

    @classmethod
    def from_state(cls, state: dict, where: str) -> Archive:
        archive = cls(state["categories"], state["styles"])
        for rec in state["cells"]:
            fitness = rec["fitness"]
            if not isinstance(fitness, (int, float)) or not math.isfinite(fitness) or not 0.0 <= fitness <= 1.0:
                raise ValueError(f"{where}: cell {rec['cell']} has fitness {fitness!r}, not a number in [0, 1]")
            archive.put(
                tuple(rec["cell"]), Elite(rec["prompt"], rec["response"], float(fitness), int(rec["iteration"]))
            )
        return archive


def read_authors_archive(path: str, categories: Sequence[str], styles: Sequence[str]) -> dict[Cell, str]:
    """The prompts of an archive file in the authors' format, by cell; its shape must match the grid.

    Read with :func:`tars_verl.data.sources.read_rainbow_archives` (its checks and messages), so any file that
    ``build_rl_mix.py`` accepts can seed a search. Scores in the file are dropped: a new target gets new fitness.
    """
    import json

    from tars_verl.data.sources import read_rainbow_archives

    if not os.path.isfile(path):
        raise FileNotFoundError(f"initial archive not found: {path} (give one archive file, not a folder)")
    df = read_rainbow_archives(path)
    with open(path) as f:
        data = json.load(f)
    rows, cols = len(data), max((len(r) for r in data), default=0)
    if rows != len(categories) or any(len(r) != len(styles) for r in data):
        raise ValueError(
            f"initial archive {path}: it has {rows} risk categories x {cols} attack styles, but the search's grid "
            f"is {len(categories)} x {len(styles)}; pass the matching --risk-categories / --attack-styles files"
        )
    return {(int(r.risk_category), int(r.attack_style)): r.prompt for r in df.itertuples()}
