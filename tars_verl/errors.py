"""The package's two error types for scoring, in a module of their own so that any module (the scorers, the reward
manager, the verl workarounds) can raise them without importing the scorer back ends.

Their message is scrubbed when they are made (:func:`tars_verl.redaction.scrub`): a reply excerpt that echoes an API
key, a URL with a password, never reaches a traceback, a log or a Ray error report.

>>> issubclass(ScorerConfigError, ValueError), issubclass(ScorerError, RuntimeError)
(True, True)
>>> str(ScorerError("POST http://user:hunter22@host/v1 failed"))
'POST http://***@host/v1 failed'
"""

from tars_verl.redaction import scrub


class ScrubbedMessage:
    """Mixin for an exception type whose string arguments are scrubbed of secrets when it is made."""

    def __init__(self, *args):
        super().__init__(*(scrub(a) if isinstance(a, str) else a for a in args))


class ScorerError(ScrubbedMessage, RuntimeError):
    """A scorer could not produce a score (endpoint down, retries spent, malformed reply...)."""


class ScorerConfigError(ScrubbedMessage, ValueError):
    """A scorer's (or the reward's) settings are wrong: raised at start-up, before any rollout."""
