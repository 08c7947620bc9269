"""A Scorer subclass of your own, named in the config as ``my_scorers.length:AnswerLength``.

    PYTHONPATH=/abs/path/to/examples/custom_scorers:$PYTHONPATH
    tars_scorer@reward.tars.helpfulness=custom \
    reward.tars.helpfulness.backend=my_scorers.length:AnswerLength \
    +reward.tars.helpfulness.target_chars=200

Its ``Config`` dataclass declares its keys: a typo'd key or a bad value stops the run at start-up (and in
``--dry-run``), as for the built-in back ends. No registration and no edit to tars_verl.
"""

from dataclasses import dataclass

from tars_verl.scorers import ScoreItem, Scorer, ScorerConfig, ScorerConfigError, ScoreResult


@dataclass
class AnswerLengthConfig(ScorerConfig):
    # Answers this long or longer score 1.0; shorter ones score proportionally less.
    target_chars: int = 400

    def validate(self) -> None:
        super().validate()
        if self.target_chars < 1:
            raise ScorerConfigError(f"target_chars must be >= 1, got {self.target_chars}")


class AnswerLength(Scorer):
    """Helpfulness as answer length: a stand-in for a real judge, to show the shape of a back end."""

    Config = AnswerLengthConfig

    async def score_batch(self, items: list[ScoreItem]) -> list[ScoreResult]:
        target = self.config.target_chars
        return [ScoreResult(min(len(it.text) / target, 1.0), {"chars": len(it.text)}) for it in items]
