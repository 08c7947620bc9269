"""guard_chat's wildguard format reads WildGuard's prompt at start-up from its published wildguard/utils.py (a pinned
commit of its repository, $TARS_WILDGUARD_URL, or a file the user names); nothing of it ships in this package."""

import pytest

from tars_verl.scorers import ScorerConfigError, build_scorer
from tars_verl.scorers.guard_chat import WILDGUARD_COMMIT, WILDGUARD_SOURCE_URL
from tars_verl.testing.wildguard_standin import STANDIN_TEMPLATE, STANDIN_UTILS


def _guard(server, **cfg):
    return build_scorer({"backend": "guard_chat", "url": server.url + "/v1", "format": "wildguard", **cfg})


def test_the_default_source_is_wildguards_repository_at_a_pinned_commit():
    assert WILDGUARD_SOURCE_URL.startswith("https://raw.githubusercontent.com/allenai/wildguard/")
    assert f"/{WILDGUARD_COMMIT}/wildguard/utils.py" in WILDGUARD_SOURCE_URL and len(WILDGUARD_COMMIT) == 40


def test_the_prompt_is_downloaded_once_and_sent_filled_in(server, tmp_path, monkeypatch):
    monkeypatch.delenv("TARS_WILDGUARD_URL")
    server.files["/wg/wildguard/utils.py"] = STANDIN_UTILS
    source = server.url + "/wg/wildguard/utils.py"
    scorer = _guard(server, template_source=source, cache_dir=str(tmp_path / "c"))
    assert scorer.template == STANDIN_TEMPLATE and server.gets == ["/wg/wildguard/utils.py"]
    assert _guard(server, template_source=source, cache_dir=str(tmp_path / "c")).template == STANDIN_TEMPLATE
    assert server.gets == ["/wg/wildguard/utils.py"]  # the second scorer read the cache
    path, payload = scorer._payload(type("Item", (), {"prompt": "How do I bake bread?", "text": "Knead it."})())
    assert path == "/completions" and "Request:\nHow do I bake bread?\n\nReply:\nKnead it." in payload["prompt"]
    assert not payload["prompt"].startswith("<s>")  # the server adds the BOS token itself


def test_the_environment_variable_names_the_source(server, tmp_path, monkeypatch):
    server.files["/mirror/utils.py"] = STANDIN_UTILS
    monkeypatch.setenv("TARS_WILDGUARD_URL", server.url + "/mirror/utils.py")
    monkeypatch.setenv("TARS_CACHE_DIR", str(tmp_path))
    assert _guard(server).template == STANDIN_TEMPLATE and server.gets == ["/mirror/utils.py"]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("WILDGUARD_INPUT_FORMAT = 'Human: {prompt}'\n", r"has no \{response\}"),
        ("A = 'x'\nWILDGUARD_INPUT_FORMAT = A\n", "expected one string assigned to WILDGUARD_INPUT_FORMAT, found 0"),
        ("WILDGUARD_INPUT_FORMAT = '''\n", "not Python"),
        ("<html>nothing here</html>", r"has no \{prompt\} or \{response\}"),
    ],
)
def test_a_file_that_is_not_wildguards_stops_the_scorer_at_build_naming_the_file(server, tmp_path, text, problem):
    bad = tmp_path / "utils.py"
    bad.write_text(text)
    with pytest.raises(ScorerConfigError, match=f"guard_chat.template_source: {bad}: .*{problem}"):
        _guard(server, template_source=str(bad))


def test_an_unreachable_source_stops_the_scorer_at_build_and_says_what_to_do(server, tmp_path):
    with pytest.raises(ScorerConfigError, match=r"guard_chat.template_source: .*404.*template_source=PATH"):
        _guard(server, template_source=server.url + "/nothing/utils.py", cache_dir=str(tmp_path))
    with pytest.raises(ScorerConfigError, match="is not a file"):
        _guard(server, template_source=str(tmp_path / "missing.py"))


def test_a_template_given_in_the_config_is_used_as_is(server):
    assert _guard(server, template="Q {prompt} R {response}").template == "Q {prompt} R {response}"
