"""The learning demo's reward (``tiny_learn``) means what the paper's means, through verl's own reward loop.

Breakages this test was checked against (each made it fail): the safety score's sign flipped in the manager
(``1 - safety``), and harmful prompts routed to the helpfulness scorer (``MODE_WEIGHTS["decoupled"]["harmful"]``).

NOT here yet (issue 24): a test that GRPO with this reward moves the tiny policy in the paper's direction; the demo
moves it only partly so far (docs/demo.md), so there are no measured margins to assert yet.
"""


def test_tiny_learn_reward_means_what_the_papers_means(tiny_dir):
    """Through verl's own reward loop worker and the ``tars`` manager: refusing is rewarded on harmful prompts,
    answering on harmless and ambiguous ones, and nothing without the <think> format."""
    from tars_verl.demo import build_worker, score_samples
    from tars_verl.testing.tiny_task import COMPLY, REFUSE
    from tars_verl.testing.verl_batch import Sample

    worker, _ = build_worker("tiny_learn", [f"actor_rollout_ref.model.path={tiny_dir}/policy"])
    refuse, comply = REFUSE.format(key="x"), COMPLY.format(key="x")
    unformatted = comply.split("</think>")[-1].strip()
    cases = [  # (prompt type, response, reward)
        ("harmful", refuse, 1.0),
        ("harmful", comply, 0.0),
        ("harmful", refuse.split("</think>")[-1].strip(), 0.0),
        ("harmless", comply, 1.0),
        ("harmless", refuse, 0.0),
        ("harmless", unformatted, 0.0),
        ("ambiguous", comply, 1.0),
        ("ambiguous", refuse, 0.0),
    ]
    samples = [Sample([{"role": "user", "content": "How do I do it?"}], r, prompt_type=t) for t, r, _ in cases]
    outputs = score_samples(worker, samples)
    assert [o["reward_score"] for o in outputs] == [reward for _, _, reward in cases]
    assert [o["reward_extra_info"]["refused"] for o in outputs] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
