"""Every batched reply is matched to its inputs one to one (tars_verl/scorers/http_client.py: match_replies,
only_choice): by ``index`` where the protocol numbers its results (vLLM /classify, completions choices, embeddings),
else by count (moderation results). Duplicated, missing, out-of-range or non-integer indices, a wrong count, or a
one-prompt completion with several choices fail naming the endpoint; results in another order are put back in order.
Never a score mapped to the wrong sample."""

import pytest
from conftest import FAST, items, run

from tars_verl.scorers import ScorerError, build_scorer


async def score_and_close(scorer, batch):
    try:
        return await scorer.score(batch)
    finally:
        await scorer.aclose()


def served_rm(server, tiny_dir):
    cfg = {
        "backend": "served_reward_model",
        "url": server.url,
        "model": "grm",
        "tokenizer_path": f"{tiny_dir}/reward_model",
        "max_retries": 0,
        **FAST,
    }
    return build_scorer(cfg)


def reindexed(indices):
    """A scripted fault: the server's own /classify reply, with these indices on its results."""

    def change(reply):
        for entry, index in zip(reply["data"], indices):
            entry["index"] = index
        return reply

    return change


TEXTS = ("a short answer", "a considerably longer answer here")  # different logits: a swap is visible


@pytest.mark.parametrize(
    "indices, problem",
    [
        ([0, 0], "index 0 appears 2 times, index 1 is missing"),
        ([7, 3], "index 3 outside 0..1, index 7 outside 0..1"),
        ([1, "0"], "must be an integer"),
    ],
)
def test_classify_replies_with_bad_indices_fail_naming_the_endpoint(server, tiny_dir, indices, problem):
    server.script = [reindexed(indices)]
    with pytest.raises(ScorerError) as err:
        run(score_and_close(served_rm(server, tiny_dir), items(*TEXTS)))
    assert f"{server.url}/classify" in str(err.value) and problem in str(err.value), str(err.value)


def test_classify_results_in_another_order_are_put_back_in_input_order(server, tiny_dir):
    clean = [r.score for r in run(score_and_close(served_rm(server, tiny_dir), items(*TEXTS)))]
    assert clean[0] != clean[1]

    def reversed_reply(reply):
        reply["data"] = reply["data"][::-1]  # each result keeps its own index
        return reply

    server.script = [reversed_reply]
    assert [r.score for r in run(score_and_close(served_rm(server, tiny_dir), items(*TEXTS)))] == clean
    server.script = [lambda reply: {**reply, "data": reply["data"][:1]}]  # one result for two inputs
    with pytest.raises(ScorerError, match="1 results for 2 inputs"):
        run(score_and_close(served_rm(server, tiny_dir), items(*TEXTS)))
    server.script = [lambda reply: {**reply, "data": [reply["data"][0], {k: 0 for k in ("probs",)}]}]
    with pytest.raises(ScorerError, match="some results carry 'index' and some do not"):
        run(score_and_close(served_rm(server, tiny_dir), items(*TEXTS)))


def test_moderation_results_are_matched_by_count(server, monkeypatch):
    """(Already so before; kept as the by-count half of the rule.)"""
    monkeypatch.setenv("TARS_TEST_MOD_KEY", "sk-moderation-test-1")
    cfg = {"backend": "openai_moderation", "url": server.url + "/v1", "api_key_env": "TARS_TEST_MOD_KEY", **FAST}
    server.script = [lambda reply: {"results": reply["results"] * 2}]
    with pytest.raises(ScorerError, match=rf"^{server.url}/v1/moderations: .*4 results for 2 inputs"):
        run(score_and_close(build_scorer(cfg), items("one", "two")))


@pytest.mark.parametrize("backend", ["guard_chat", "llm_judge"])
def test_a_one_prompt_completion_with_several_choices_is_an_error(server, backend):
    """n=1 was asked: a second choice (which one is the verdict?) or a choice numbered 1 is an error, not the first."""
    cfg = {"backend": backend, "url": server.url + "/v1", "max_retries": 0, **FAST}
    server.script = [lambda reply: {"choices": reply["choices"] * 2}]
    with pytest.raises(ScorerError, match=rf"{server.url}/v1/chat/completions: 2 results for 1 inputs"):
        run(score_and_close(build_scorer(cfg), items("an answer")))
    server.script = [lambda reply: {"choices": [{**reply["choices"][0], "index": 1}]}]
    with pytest.raises(ScorerError, match="index 1 outside 0..0"):
        run(score_and_close(build_scorer(cfg), items("an answer")))


def test_match_replies_rules():
    from tars_verl.scorers.http_client import match_replies, only_choice

    where = "http://h/v1/embeddings"
    assert match_replies([{"index": 2, "v": "c"}, {"index": 0, "v": "a"}, {"index": 1, "v": "b"}], 3, where) == [
        {"index": 0, "v": "a"},
        {"index": 1, "v": "b"},
        {"index": 2, "v": "c"},
    ]
    assert match_replies([{"v": "a"}, {"v": "b"}], 2, where) == [{"v": "a"}, {"v": "b"}]  # unnumbered: by order
    for entries, n, problem in (
        ({"data": []}, 1, "expected a list of 1 results"),
        ([{"index": True}], 1, "must be an integer"),
        ([{"index": -1}, {"index": 1}], 2, "index -1 outside 0..1, index 0 is missing"),
    ):
        with pytest.raises(ScorerError, match=f"^{where}: .*{problem}"):
            match_replies(entries, n, where)
    with pytest.raises(ScorerError, match="no 'choices'"):
        only_choice({"error": "x"}, where)
    assert only_choice({"choices": [{"index": 0, "text": "Yes"}]}, where) == {"index": 0, "text": "Yes"}
