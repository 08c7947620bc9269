"""In-process back ends with the tiny random models the tests build."""

import pytest
import torch
from conftest import run
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tars_verl.scorers import ScoreItem, ScorerConfigError, build_scorer


def items(*texts):
    return [ScoreItem(prompt="Tell me", text=t, messages=[{"role": "user", "content": "Tell me"}]) for t in texts]


TEXTS = ["", "   ", "I can't help with that.", "Réponse: 你好 \U0001f600", "word " * 2000]


def test_classifier_batch_equals_reference_softmax(tiny_dir):
    scorer = build_scorer(
        {
            "backend": "hf_classifier",
            "model_path": f"{tiny_dir}/classifier",
            "safe_label": "SAFE",
            "max_length": 64,
            "device": "cpu",
        }
    )
    res = run(scorer.score(items(*TEXTS)))
    tok = AutoTokenizer.from_pretrained(f"{tiny_dir}/classifier")
    model = AutoModelForSequenceClassification.from_pretrained(f"{tiny_dir}/classifier").eval()
    for text, r in zip(TEXTS, res):  # one at a time, no padding: batching must not change the score
        enc = tok([text or tok.eos_token], truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            expected = torch.softmax(model(**enc).logits, -1)[0, 1].item()
        assert r.score == pytest.approx(expected, abs=1e-4)
    assert [r.details["truncated"] for r in res] == [False, False, False, False, True]


def test_classifier_safe_label_must_exist(tiny_dir):
    with pytest.raises(ScorerConfigError, match="labels"):
        build_scorer({"backend": "hf_classifier", "model_path": f"{tiny_dir}/classifier", "safe_label": "OK"})
    with pytest.raises(ScorerConfigError, match="safe_label is required"):
        build_scorer({"backend": "hf_classifier", "model_path": f"{tiny_dir}/classifier"})


def test_single_logit_classifier_direction(tiny_dir):
    """The safety score is sigmoid(logit) when the logit means "safe", 1 - sigmoid(logit) when it means "unsafe"."""
    base = {"backend": "hf_classifier", "model_path": f"{tiny_dir}/reward_model", "device": "cpu"}
    tok = AutoTokenizer.from_pretrained(f"{tiny_dir}/reward_model")
    model = AutoModelForSequenceClassification.from_pretrained(f"{tiny_dir}/reward_model").eval()
    with torch.no_grad():
        p = torch.sigmoid(model(**tok(["abc"], return_tensors="pt")).logits[0, 0]).item()
    assert abs(p - 0.5) > 1e-3  # else the two directions could not be told apart
    unsafe = run(build_scorer({**base, "single_logit_means": "unsafe"}).score(items("abc")))[0].score
    safe = run(build_scorer({**base, "single_logit_means": "safe"}).score(items("abc")))[0].score
    assert safe == pytest.approx(p, abs=1e-4)
    assert unsafe == pytest.approx(1 - p, abs=1e-4)


def test_reward_model_uses_its_own_chat_template_and_sigmoid(tiny_dir):
    scorer = build_scorer(
        {"backend": "hf_reward_model", "model_path": f"{tiny_dir}/reward_model", "device": "cpu", "max_length": 128}
    )
    res = run(scorer.score(items(*TEXTS)))
    tok = AutoTokenizer.from_pretrained(f"{tiny_dir}/reward_model")
    model = AutoModelForSequenceClassification.from_pretrained(f"{tiny_dir}/reward_model").eval()
    for text, r in zip(TEXTS, res):
        chat = [{"role": "user", "content": "Tell me"}, {"role": "assistant", "content": text}]
        s = tok.apply_chat_template(chat, tokenize=False)
        enc = tok([s], truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            logit = model(**enc).logits[0, 0].item()
        assert r.details["logit"] == pytest.approx(logit, abs=1e-4)
        assert r.score == pytest.approx(1 / (1 + torch.exp(torch.tensor(-logit)).item()), abs=1e-5)
    assert res[-1].details["truncated"] and not res[0].details["truncated"]


def test_missing_model_path_is_a_config_error():
    with pytest.raises(ScorerConfigError, match="model_path is not set"):
        build_scorer({"backend": "hf_reward_model"})


def test_device_auto_never_takes_a_gpu_the_ray_worker_was_not_given(monkeypatch):
    from tars_verl.scorers import hf_sequence_classifier

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU node
    monkeypatch.setattr(hf_sequence_classifier, "ray_worker_gpu_ids", lambda: [])  # verl's reward worker: num_gpus=0
    assert hf_sequence_classifier.resolve_device("auto").type == "cpu"
    assert hf_sequence_classifier.resolve_device("cuda:1") == torch.device(
        "cuda:1"
    )  # explicit: the user set a GPU aside
    monkeypatch.setattr(hf_sequence_classifier, "ray_worker_gpu_ids", lambda: [3])  # a worker Ray gave a GPU
    assert hf_sequence_classifier.resolve_device("auto").type == "cuda"
    monkeypatch.setattr(hf_sequence_classifier, "ray_worker_gpu_ids", lambda: None)  # not in Ray (evaluation, scripts)
    assert hf_sequence_classifier.resolve_device("auto").type == "cuda"


@pytest.mark.slow
def test_scorer_in_a_zero_gpu_ray_worker_stays_on_cpu_even_when_cuda_is_visible(tiny_dir):
    """The real Ray detection: a zero-GPU task on a node where CUDA looks available builds the scorer on CPU."""
    ray = pytest.importorskip("ray")

    @ray.remote(num_cpus=1, num_gpus=0)
    def build_and_score(model_dir):  # self-contained: Ray ships it by value, the test module is not importable there
        import asyncio

        import torch as t

        from tars_verl.scorers import ScoreItem as Item
        from tars_verl.scorers import build_scorer as build
        from tars_verl.scorers import hf_sequence_classifier

        t.cuda.is_available = lambda: True  # what a GPU node shows a worker Ray gave no GPU
        scorer = build({"backend": "hf_reward_model", "model_path": f"{model_dir}/reward_model", "max_length": 64})
        item = Item(prompt="Tell me", text="hello", messages=[{"role": "user", "content": "Tell me"}])
        score = asyncio.run(scorer.score([item]))[0].score
        return str(scorer.rm.device), hf_sequence_classifier.ray_worker_gpu_ids(), score

    ray.init(num_cpus=1, include_dashboard=False)
    try:
        device, gpus, score = ray.get(build_and_score.remote(tiny_dir))
    finally:
        ray.shutdown()
    assert device == "cpu" and gpus == [] and 0.0 <= score <= 1.0
