"""The package's two error types for scoring, in a module of their own so that any module (the scorers, the reward
manager, the verl workarounds) can raise them without importing the scorer back ends.

>>> issubclass(ScorerConfigError, ValueError), issubclass(ScorerError, RuntimeError)
(True, True)
"""


class ScorerError(RuntimeError):
    """A scorer could not produce a score (endpoint down, retries spent, malformed reply...)."""


class ScorerConfigError(ValueError):
    """A scorer's (or the reward's) settings are wrong: raised at start-up, before any rollout."""
