from pathlib import Path

from pydantic_settings import SettingsConfigDict

from jobkit.settings import ServiceSettings


class _Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore")
    service_name = "demo"


def test_empty_token_from_compose_means_no_token(monkeypatch):
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
