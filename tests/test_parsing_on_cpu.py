import pytest

from tars_verl.reward.response_format import format_reward, split_reasoning


@pytest.mark.parametrize(
    "response, prefilled, ok",
    [
        ("<think>\nr\n</think>\n\nanswer", False, True),
        ("<think></think>answer", False, True),
        ("</think>\n\nanswer", False, False),  # missing <think>
        ("<think>\nr\n</think>\n\nanswer", True, False),  # pre-filled template: <think> must not repeat
        ("r\n</think>\n\nanswer", True, True),
        ("</think> a <think>", False, False),  # wrong order
        ("<think>a</think><think>b</think>c", False, False),
        ("<think>a</think>b</think>c", False, False),  # two </think>
        ("", False, False),
        ("   \n ", False, False),
        ("plain answer, no tags", False, False),
    ],
)
def test_format(response, prefilled, ok):
    assert split_reasoning(response, prefilled).format_ok is ok
    assert format_reward(response, prefilled) == (1.0 if ok else 0.0)


def test_split_takes_text_after_close_tag():
    parts = split_reasoning("<think>\nIt asks for malware.\n</think>\n\nI can't help with that.")
    assert parts.reasoning == "It asks for malware."
    assert parts.answer == "I can't help with that."
    assert parts.has_close_tag


def test_missing_close_tag_makes_the_whole_response_the_answer():
    parts = split_reasoning("<think> still thinking and then the harmful text")
    assert parts.answer == "<think> still thinking and then the harmful text"
    assert parts.reasoning == "" and not parts.has_close_tag and not parts.format_ok


def test_two_close_tags_answer_is_after_the_last():
    parts = split_reasoning("<think>a</think>b</think>final")
    assert parts.answer == "final" and not parts.format_ok


def test_prefilled_reasoning_and_non_ascii():
    parts = split_reasoning("Réflexion: 你好 \U0001f600\n</think>\n\nRéponse ✓", think_prefilled=True)
    assert parts.reasoning == "Réflexion: 你好 \U0001f600"
    assert parts.answer == "Réponse ✓" and parts.format_ok


def test_empty_answer_after_close_tag():
    parts = split_reasoning("<think>x</think>   ")
    assert parts.answer == "" and parts.format_ok
