"""Choosing the backend from run config and environment; the fake endpoint's own surface."""

from __future__ import annotations

import openai
import pytest

from lm import ConfigError, OfflineMutationModel, OpenAICompatibleBackend, backend_from_config
from lm.fake_server import FakeOpenAIServer


def test_nothing_configured_is_offline() -> None:
    b = backend_from_config(None, {})
    assert isinstance(b, OfflineMutationModel) and b.describe()["label"] == "offline, no language model"
    assert isinstance(
        backend_from_config({"lm": {"backend": "offline"}}, {"OPENAI_API_KEY": "k"}), OfflineMutationModel
    )


def test_environment_selects_openai() -> None:
    b = backend_from_config({}, {"OPENAI_API_KEY": "sk-abc", "OPENAI_MODEL": "gpt-4o-mini"})
    assert isinstance(b, OpenAICompatibleBackend)
    assert b.default_model == "gpt-4o-mini" and b.base_url == "https://api.openai.com/v1"
    assert "sk-abc" not in repr(b) and "sk-abc" not in repr(b.describe())


def test_config_wins_and_local_servers_need_no_key() -> None:
    b = backend_from_config(
        {"lm": {"model": "qwen2.5-coder", "base_url": "http://localhost:11434/v1", "concurrency": 3}},
        {"OPENAI_MODEL": "gpt-4o-mini"},
    )
    assert isinstance(b, OpenAICompatibleBackend)
    assert (b.default_model, b.base_url, b.concurrency) == ("qwen2.5-coder", "http://localhost:11434/v1", 3)
    assert b.describe()["api_key_set"] is False


def test_key_in_config_is_refused_and_missing_model_is_explained() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        backend_from_config({"lm": {"api_key": "sk-x"}}, {})
    with pytest.raises(ConfigError, match="OPENAI_MODEL"):
        backend_from_config({}, {"OPENAI_BASE_URL": "http://localhost:8000/v1"})
    with pytest.raises(ConfigError, match=r"unknown lm\.backend"):
        backend_from_config({"backend": "anthropic"}, {})
    b = backend_from_config({"lm": {"api_key_env": "MY_KEY", "model": "m"}}, {"MY_KEY": "secret"})
    assert isinstance(b, OpenAICompatibleBackend) and b.describe()["api_key_set"] is True


@pytest.mark.anyio
async def test_fake_server_lists_models_and_counts_paths() -> None:
    with FakeOpenAIServer(models=["a", "b"], api_key="k") as srv:
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key="k", max_retries=0) as client:
            models = await client.models.list()
            assert [m.id for m in models.data] == ["a", "b"]
            r = await client.chat.completions.create(model="a", messages=[{"role": "user", "content": "hi"}])
            assert r.choices[0].message.content
        assert srv.counts() == {"/v1/models": 1, "/v1/chat/completions": 1}
        assert srv.requests[1].authorization == "Bearer k"
