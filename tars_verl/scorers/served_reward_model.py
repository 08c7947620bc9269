"""Helpfulness from a reward model served by vLLM's ``/classify`` endpoint (one request per batch).

``url: verl`` uses the reward model verl serves itself (``reward.reward_model.enable=True``): verl
passes its router address and the RM tokenizer to the reward manager. Because verl then bypasses
any reward manager unless ``reward.custom_reward_function.path`` is set, the TARS manager refuses
to start in that case and says what to set (see ``tars_verl/reward_manager.py``).

Example config::

    backend: served_reward_model
    url: http://127.0.0.1:8002          # `vllm serve Ray2333/GRM-llama3-8B-distill` (a classifier: /classify)
    model: Ray2333/GRM-llama3-8B-distill
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .base import ScoreItem, ScoreResult, Scorer, ScorerConfigError, ScorerError, register_scorer
from .hf_reward_model import rm_conversation_text
from .http import HttpEndpoint, HttpScorerConfig, check_endpoint_sync

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
class ServedRewardModelScorer(Scorer):
    Config = ServedRewardModelConfig

    def __init__(self, config: ServedRewardModelConfig, reward_router_address: str | None = None,
                 reward_model_tokenizer=None, **context):
        super().__init__(config)
        self.uses_verl_router = config.url == VERL_ROUTER
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
        self.endpoint = HttpEndpoint.from_config(config, url)

    def check_ready(self) -> None:
        if not self.uses_verl_router:
            check_endpoint_sync(self.config)

    async def score_batch(self, items: list[ScoreItem]) -> list[ScoreResult]:
        texts = [rm_conversation_text(self.tokenizer, it) for it in items]
        use_activation = self.config.activation == "none"
        body = await self.endpoint.post_json(
            "/classify", {"model": self.config.model, "input": texts, "use_activation": use_activation}
        )
        try:
            data = sorted(body["data"], key=lambda d: d.get("index", 0))
            if len(data) != len(items):
                raise ValueError(f"{len(data)} results for {len(items)} inputs")
            raw = [float(d["probs"][-1]) for d in data]
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ScorerError(f"{self.endpoint.base_url}/classify: unexpected reply shape ({err}): {str(body)[:200]}") from err
        if use_activation:
            return [ScoreResult(r, {"prob": r}) for r in raw]
        return [ScoreResult(1.0 / (1.0 + math.exp(-r)), {"logit": r}) for r in raw]

    async def aclose(self) -> None:
        await self.endpoint.aclose()
