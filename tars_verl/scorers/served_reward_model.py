"""Helpfulness from a reward model served by vLLM's ``/classify`` endpoint (one request per batch).

With ``url: verl`` the route follows the back end verl serves its RM with
(``reward.reward_model.rollout.name``): ``/classify`` for vLLM, ``/v1/embeddings`` for SGLang.

``url: verl`` uses the reward model verl serves itself (``reward.reward_model.enable=True``): verl
passes its router address and the RM tokenizer to the reward manager. Because verl then bypasses
any reward manager unless ``reward.custom_reward_function.path`` is set, the TARS manager refuses
to start in that case and says what to set (see ``tars_verl/reward/manager.py``).

Example config::

    backend: served_reward_model
    url: http://127.0.0.1:8002          # `vllm serve Ray2333/GRM-llama3-8B-distill` (a classifier: /classify)
    model: Ray2333/GRM-llama3-8B-distill
"""

from __future__ import annotations

from dataclasses import dataclass

# The route of verl's RM server per back end mirrors verl's router: workaround served_rm_routing.
from tars_verl.verl_workarounds import verl_rm_route

from .base import ScoreItem, ScorerConfigError, ScoreResult, checked_value, register_scorer, stable_sigmoid
from .hf_reward_model import rm_conversation_text
from .http_client import HttpScorerConfig
from .http_scorer import HttpScorer

VERL_ROUTER = "verl"


@dataclass
class ServedRewardModelConfig(HttpScorerConfig):
    url: str = "http://127.0.0.1:8002"
    model: str = "Ray2333/GRM-llama3-8B-distill"
    # The RM's tokenizer (for its chat template); defaults to `model`. Unused with url=verl.
    tokenizer_path: str | None = None
    # "sigmoid" of the raw logit (use_activation=false on the server) or "none" (server probabilities).
    activation: str = "sigmoid"
    health_path: str | None = "/health"
    trust_remote_code: bool = False

    def validate(self) -> None:
        super().validate()
        if self.activation not in ("sigmoid", "none"):
            raise ScorerConfigError(f"{self.backend}.activation must be 'sigmoid' or 'none'")


@register_scorer("served_reward_model")
class ServedRewardModelScorer(HttpScorer):
    Config = ServedRewardModelConfig

    def __init__(
        self,
        config: ServedRewardModelConfig,
        reward_router_address: str | None = None,
        reward_model_tokenizer=None,
        reward_model_backend: str | None = None,
        **context,
    ):
        self.uses_verl_router = config.url == VERL_ROUTER
        # Your own server is vLLM (/classify); verl's is whatever reward.reward_model.rollout.name says.
        self.route = verl_rm_route(reward_model_backend) if self.uses_verl_router else "/classify"
        if self.route == "/v1/embeddings" and config.activation != "sigmoid":
            raise ScorerConfigError(
                f"{config.backend}.activation=none: SGLang's /v1/embeddings returns the raw "
                "reward score, not a probability; use activation=sigmoid"
            )
        if self.uses_verl_router:
            if not reward_router_address or reward_model_tokenizer is None:
                raise ScorerConfigError(
                    "served_reward_model.url=verl needs verl's own reward model: set reward.reward_model.enable=True "
                    "and reward.reward_model.model_path (verl then passes its router address and RM tokenizer)."
                )
            url = reward_router_address if "://" in reward_router_address else f"http://{reward_router_address}"
            self.tokenizer = reward_model_tokenizer
        else:
            from transformers import AutoTokenizer

            url = config.url
            self.tokenizer = AutoTokenizer.from_pretrained(
                config.tokenizer_path or config.model, trust_remote_code=config.trust_remote_code
            )
        super().__init__(config, endpoint_url=url)

    def check_ready(self) -> None:
        # With url=verl, config.url is no address: verl starts its RM server and router itself.
        if not self.uses_verl_router:
            super().check_ready()

    async def score_batch(self, items: list[ScoreItem]) -> list[ScoreResult]:
        texts = [rm_conversation_text(self.tokenizer, it) for it in items]
        if self.route == "/v1/embeddings":  # SGLang: the score is the last value of the "embedding"
            body = await self.endpoint.post_json(self.route, {"model": self.config.model, "input": texts})
            value_key, use_activation = "embedding", False
        else:  # vLLM pooling
            use_activation = self.config.activation == "none"
            body = await self.endpoint.post_json(
                self.route, {"model": self.config.model, "input": texts, "use_activation": use_activation}
            )
            value_key = "probs"
        where = self.where(self.route)
        with self.reading_reply(where, body):
            # One result per input, put in input order by its index (duplicates, gaps, out-of-range: an error).
            data = self.match_replies(body["data"], len(items), self.route)
            values = [d[value_key][-1] for d in data]
        # Checked before use: a probability must lie in [0, 1], a logit must be finite.
        bounds = (0.0, 1.0) if use_activation else (None, None)
        kind = "prob" if use_activation else "logit"
        raw = [checked_value(v, f"{where}: item {i} {kind}", *bounds) for i, v in enumerate(values)]
        if use_activation:
            return [ScoreResult(r, {"prob": r}) for r in raw]
        return [ScoreResult(stable_sigmoid(r), {"logit": r}) for r in raw]
