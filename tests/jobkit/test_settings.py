from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from jobkit.settings import ServiceSettings


class _Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore")
    service_name = "demo"


def test_empty_token_from_compose_means_no_token(monkeypatch):
    monkeypatch.delenv("API_TOKEN", raising=False)
    monkeypatch.setenv("DEMO_API_TOKEN", "")
    assert _Settings().api_token is None
    monkeypatch.setenv("DEMO_API_TOKEN", "t0k")
    assert _Settings().api_token.get_secret_value() == "t0k"


def test_state_paths_are_named_for_the_service(tmp_path):
    settings = _Settings(data_root=tmp_path)
    assert settings.jobs_db == tmp_path / "state" / "demo-jobs.db"
    assert settings.logs_dir == tmp_path / "state" / "demo-logs"


def test_worker_env_round_trips_through_the_environment(tmp_path, monkeypatch):
    settings = _Settings(data_root=tmp_path, port=9999, api_token="s", cancel_grace_s=3.5)
    env = settings.worker_env()
    assert env["DEMO_DATA_ROOT"] == str(tmp_path) and env["DEMO_API_TOKEN"] == "s"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    again = _Settings()
    assert again == settings
    assert isinstance(again.data_root, Path)


def test_api_token_is_the_shared_fallback(monkeypatch):
    monkeypatch.setenv("API_TOKEN", "shared")
    assert _Settings().api_token.get_secret_value() == "shared"
    monkeypatch.setenv("DEMO_API_TOKEN", "own")
    assert _Settings().api_token.get_secret_value() == "own"
    monkeypatch.setenv("DEMO_API_TOKEN", "")  # compose's "${API_TOKEN:-}" when unset
    assert _Settings().api_token.get_secret_value() == "shared"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.4", "::", "example.org"])
def test_no_service_opens_to_the_network_without_a_token(monkeypatch, host):
    monkeypatch.delenv("API_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="DEMO_ALLOW_NO_TOKEN=true"):
        _Settings(host=host)
    assert _Settings(host=host, allow_no_token=True).allow_no_token
    assert _Settings(host=host, api_token="t").api_token is not None
    assert _Settings(host=host, published_on="127.0.0.1").published_on == "127.0.0.1"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_needs_no_token(monkeypatch, host):
    monkeypatch.delenv("API_TOKEN", raising=False)
    assert _Settings(host=host).api_token is None
