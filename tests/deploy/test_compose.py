"""The deployment files agree with the code and with CI: no Docker engine runs here, so the
compose file is checked as data against the CLI, the settings and `.ci/run`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from core.settings import Settings
from vitrine.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _readme_env_example() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- env-example -->\s*```(?:sh|ini|dotenv)?\n(.*?)```", readme, re.S)
    assert found, "README.md has no `.env` example under <!-- env-example -->"
    return found.group(1)


def _command(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def test_compose_runs_the_servers_ci_tests_against(compose: dict) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "api", "worker", "migrate"} <= set(services)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "postgresql" in ci and "redis-server" in ci
    # Debian bookworm's PostgreSQL and Redis, the ones `.ci/run` installs.
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"].startswith("redis:7")
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["volumes"], f"{name} keeps its data in a volume"


def test_every_vitrine_service_is_built_from_the_repository(compose: dict) -> None:
    assert (ROOT / "Dockerfile").is_file()
    for name in ("api", "worker", "migrate"):
        assert compose["services"][name]["build"] == ".", name
    assert compose["services"]["api"]["deploy"]["replicas"] >= 2


def test_compose_commands_are_real_vitrine_commands(compose: dict) -> None:
    parser = build_parser()
    for name in ("api", "worker", "migrate"):
        argv = _command(compose["services"][name])
        assert argv[0] == "vitrine", name
        # The compose file's own ${VAR:-default} stands in for a number here.
        argv = [re.sub(r"\$\{[A-Z_]+:-(\w+)\}", r"\1", a) for a in argv[1:]]
        parser.parse_args(argv)
    healthcheck = compose["services"]["worker"]["healthcheck"]["test"]
    assert healthcheck[0] == "CMD" and healthcheck[1] == "vitrine"
    parser.parse_args(healthcheck[2:])
    dockerfile_cmd = re.search(r'^CMD (\[.*\])$', (ROOT / "Dockerfile").read_text(), re.M)
    assert dockerfile_cmd
    parser.parse_args(yaml.safe_load(dockerfile_cmd.group(1))[1:])


def test_the_api_leaves_jobs_to_the_worker_and_stops_gracefully(compose: dict) -> None:
    api, worker = compose["services"]["api"], compose["services"]["worker"]
    assert api["environment"]["VITRINE_SERVE_RUNS_JOBS"] == "false"
    for service in (api, worker):
        assert service["stop_grace_period"]
        needs = service["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"


def test_every_variable_named_is_a_setting(compose: dict) -> None:
    known = {f"VITRINE_{name.upper()}" for name in Settings.model_fields}
    named = set(re.findall(r"\b(VITRINE_[A-Z_]+)\b", (ROOT / "docker-compose.yml").read_text()))
    named |= set(re.findall(r"^(VITRINE_[A-Z_]+)=", _readme_env_example(), re.M))
    assert named - known == set()


def test_the_readme_env_example_is_refused_until_its_secrets_are_replaced(
        tmp_path: Path) -> None:
    example = tmp_path / ".env"
    example.write_text(_readme_env_example())
    with pytest.raises(ValueError, match="placeholder secrets"):
        Settings(_env_file=example)  # type: ignore[call-arg]
    filled = re.sub(r"=change-me\S*", "=0123456789abcdef0123456789abcdef",
                    example.read_text())
    example.write_text(filled)
    settings = Settings(_env_file=example)  # type: ignore[call-arg]
    assert settings.env == "production"
    assert settings.public_url.startswith("https://")
