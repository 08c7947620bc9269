"""Graded guard verdicts from token log-probabilities: right for any tokenisation, every verdict class,
never silently against the text verdict; text-completion templates do not double the BOS token."""

import logging
import math

import pytest
from conftest import items, run

from tars_verl.scorers import build_scorer
from tars_verl.scorers.guard_chat import FORMATS, graded_verdict, most_probable_verdict, verdict_scores

LN = math.log


def stream(*steps):
    """(token, {alternative: probability}) -> the (token, {alternative: logprob}) stream graded_verdict reads."""
    return [(tok, {a: LN(p) for a, p in alts.items()}) for tok, alts in steps]


def test_verdict_split_into_two_tokens_is_read_where_the_verdicts_diverge():
    # The reproduction: "Safety: Unsafe" tokenised Safety, :, " Un", "safe". The old reading took
    # the first token whose text is a verdict word ("safe", certain given " Un") and scored 1.0 (safe).
    toks = stream(
        ("Safety", {"Safety": 1.0}),
        (":", {":": 1.0}),
        (" Un", {" Un": 0.7, " Safe": 0.3}),
        ("safe", {"safe": 1.0}),
        ("\n", {"\n": 1.0}),
    )
    assert graded_verdict(toks, FORMATS["qwen3guard"]) == pytest.approx(0.3)


def test_controversial_of_three_tokens_counts_in_full():
    toks = stream(
        ("Safety", {"Safety": 1.0}),
        (":", {":": 1.0}),
        (" Cont", {" Cont": 0.6, " Safe": 0.3, " Unsafe": 0.1}),
        ("rovers", {"rovers": 0.9, "inent": 0.1}),
        ("ial", {"ial": 1.0}),
    )
    scores = verdict_scores("qwen3guard", controversial_score=0.5)
    # P(controversial) = 0.6 * 0.9 (" Continent" fits no verdict word and is skipped); 0.3 safe; 0.1 unsafe
    p = {"controversial": 0.54, "safe": 0.3, "unsafe": 0.1}
    expected = (p["safe"] + 0.5 * p["controversial"]) / sum(p.values())
    assert graded_verdict(toks, FORMATS["qwen3guard"], scores) == pytest.approx(expected)
    assert most_probable_verdict(toks, FORMATS["qwen3guard"], scores) == "controversial"


def test_alternative_tokenisations_of_the_same_word_add_up():
    # "unsafe" emitted as one token; "uns" (the start of unsafe) and "safe" are the alternatives.
    toks = stream(("\n\n", {"\n\n": 1.0}), ("unsafe", {"unsafe": 0.5, "uns": 0.2, "safe": 0.3}), ("\n", {"\n": 1.0}))
    assert graded_verdict(toks, FORMATS["llama_guard"]) == pytest.approx(0.3)


def test_real_qwen_tokenisation_of_every_verdict_class():
    """Each format's verdicts as Qwen's tokenizer splits them: the reply's class gets P(its path), every other
    class the probability of its first diverging token, whatever the number of tokens of each word."""
    from transformers import AutoTokenizer

    from tars_verl.testing.served_models import qwen_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(qwen_tokenizer_dir())
    surface = {
        "llama_guard": ("\n\n", {"safe": "safe", "unsafe": "unsafe"}),
        "qwen3guard": ("Safety:", {"safe": " Safe", "unsafe": " Unsafe", "controversial": " Controversial"}),
        "wildguard": (" Harmful response:", {"no": " no", "yes": " yes", "n/a": " n/a"}),
        "harmbench": ("", {"no": "No", "yes": "Yes"}),
    }
    for fmt_name, (lead, words) in surface.items():
        scores = verdict_scores(fmt_name, controversial_score=0.5)
        assert set(words) == set(scores)
        for emitted, emitted_text in words.items():
            lead_ids = tok(lead, add_special_tokens=False)["input_ids"]
            word_ids = tok(lead + emitted_text, add_special_tokens=False)["input_ids"][len(lead_ids) :]
            pieces = [tok.decode([i]) for i in word_ids]
            others = {
                w: tok.decode(tok(lead + t, add_special_tokens=False)["input_ids"][len(lead_ids)])
                for w, t in words.items()
                if w != emitted
            }
            assert "".join(pieces) == emitted_text
            p_other = 0.1
            first = {pieces[0]: 1 - p_other * len(others), **{t: p_other for t in others.values()}}
            toks = stream(
                *[(tok.decode([i]), {tok.decode([i]): 1.0}) for i in lead_ids],
                (pieces[0], first),
                *[(p, {p: 1.0}) for p in pieces[1:]],
                ("\n", {"\n": 1.0}),
            )
            # A first token that starts two verdict words (" n": " no" and " n/a") decides nothing and is skipped.
            decisive = {
                w: t for w, t in others.items() if sum(s.lower().startswith(t.lower()) for s in words.values()) == 1
            }
            assert len(decisive) >= len(others) - 1
            mass = {emitted: 1 - p_other * len(others), **{w: p_other for w in decisive}}
            want = sum(p * scores[w] for w, p in mass.items()) / sum(mass.values())
            assert graded_verdict(toks, FORMATS[fmt_name], scores) == pytest.approx(want), (fmt_name, emitted, pieces)
            assert most_probable_verdict(toks, FORMATS[fmt_name], scores) == emitted


def test_unreadable_or_non_finite_logprobs_give_no_graded_score():
    fmt = FORMATS["llama_guard"]
    assert graded_verdict([], fmt) is None
    assert graded_verdict(stream(("maybe", {"maybe": 1.0})), fmt) is None
    nan = [("safe", {"safe": float("nan"), "unsafe": -1.0})]
    assert graded_verdict(nan, fmt) is None


def test_graded_score_contradicting_the_text_verdict_is_flagged_and_not_used(server, caplog):
    server.p_unsafe = 0.3  # the guard writes "unsafe" while its log-probabilities favour "safe"
    scorer = build_scorer({"backend": "guard_chat", "url": server.url + "/v1"})
    with caplog.at_level(logging.WARNING):
        res = run(scorer.score(items("UNSAFE")))
    assert res[0].score == 0.0 and res[0].details["graded"] is False
    assert res[0].details["graded_conflict"] == pytest.approx(0.7)
    assert "contradicts the text verdict 'unsafe'" in caplog.text


def test_text_completion_template_bos_marker_is_not_sent(server):
    scorer = build_scorer({"backend": "guard_chat", "url": server.url + "/v1", "format": "wildguard"})
    run(scorer.score(items("fine")))
    prompt = server.requests[0][1]["prompt"]
    assert prompt.startswith("<|user|>\n[INST]") and "<s>" not in prompt
