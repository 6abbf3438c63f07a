"""The example host (examples/service) over real HTTP: errors + metrics, [app] secrets, kernel serve."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("kernel_errors", reason="the example needs the errors plugin")
pytest.importorskip("kernel_metrics", reason="the example needs the metrics plugin")
pytest.importorskip("uvicorn", reason="kernel serve needs uvicorn")
pytest.importorskip("starlette", reason="the example is a Starlette app")

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "kernel.toml"
APP_SECRETS = tomllib.loads(CONFIG.read_text())["app"]
SECRETS = [APP_SECRETS["jwt_secret"], APP_SECRETS["session_secret"]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    env.update(extra)
    return env


def kernel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kernel", "--config", str(CONFIG), *args],
                          cwd=ROOT, env=env or clean_env(), capture_output=True, text=True, timeout=60)


class Service:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log_path = proc, url, log

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    log = tmp_path / "service.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernel", "--config", str(CONFIG), "serve",
             "--app", "examples.service.app:app", "--port", str(port)],
            cwd=ROOT, env=clean_env(KERNEL__KERNEL__LOG_FORMAT="json"), stdout=fh, stderr=subprocess.STDOUT,
        )
    svc = Service(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the example exited with {proc.returncode}:\n{svc.log}")
        try:
            httpx.get(svc.url + "/health", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"the example did not start:\n{svc.log}") from None
            time.sleep(0.1)
    yield svc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def series(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    }


def test_example_routes_errors_metrics_and_graceful_stop(service: Service) -> None:
    responses: list[httpx.Response] = []
    with httpx.Client(base_url=service.url) as c:
        ok = c.get("/users/1")
        assert ok.status_code == 200
        assert ok.json() == {"id": "1", "name": "Ada Lovelace"}
        for i in range(200):
            missing = c.get(f"/users/{1000 + i}")
            assert missing.status_code == 404
            responses.append(missing)
        problem = missing.json()
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert problem["status"] == 404
        assert problem["detail"] == "User not found"

        bad = c.post("/users", json={"name": ""})
        assert bad.status_code == 400
        assert bad.headers["content-type"].startswith("application/problem+json")
        created = c.post("/users", json={"name": "Grace Hopper"})
        assert created.status_code == 201
        duplicate = c.post("/users", json={"name": "Grace Hopper"})
        assert duplicate.status_code == 409

        crash = c.get("/crash")
        assert crash.status_code == 500
        body = crash.json()
        assert body["status"] == 500
        assert "password_hash" not in crash.text
        assert "internalOnly" not in crash.text
        assert "ledger" not in crash.text
        assert "Traceback" not in crash.text
        trace_id = next(v for k, v in body.items() if "trace" in k.lower())

        health = c.get("/health")
        assert health.status_code == 200
        scrape = c.get("/health/metrics")
        assert scrape.status_code == 200
        responses += [ok, bad, created, duplicate, crash, health, scrape]

    requests = series(scrape.text, "http_requests_total")
    assert requests[(("method", "GET"), ("route", "/users/{user_id}"), ("status", "404"))] == 200
    assert requests[(("method", "GET"), ("route", "/users/{user_id}"), ("status", "200"))] == 1
    assert requests[(("method", "POST"), ("route", "/users"), ("status", "409"))] == 1
    assert requests[(("method", "GET"), ("route", "/crash"), ("status", "500"))] == 1
    # 200 distinct raw paths, one series per status: no raw path ever becomes a label.
    assert not any("1000" in dict(k)["route"] for k in requests)
    events = series(scrape.text, "eventbus_events_total")
    assert events[(("event", "user.created"), ("status", "success"))] == 1
    assert events[(("event", "user.created"), ("status", "conflict"))] == 1
    assert series(scrape.text, "db_query_duration_seconds_count")

    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(30) == 0
    log = service.log
    assert "kernel stopped" in log
    assert trace_id in log  # the unexpected error is logged in full, with its trace id
    for secret in SECRETS:
        assert secret not in log
        for r in responses:
            assert secret not in r.text


def test_check_validates_the_app_section_fail_fast() -> None:
    ok = kernel("check")
    assert ok.returncode == 0, ok.stderr
    weak = kernel("check", env=clean_env(KERNEL__APP__JWT_SECRET="short",
                                         KERNEL__APP__SESSION_SECRET=SECRETS[0]))
    assert weak.returncode == 2
    assert "app.jwt_secret: must be at least 32 characters long" in weak.stderr
    assert "short" not in weak.stderr.replace("at least", "")


def test_missing_secrets_stop_the_service_before_it_serves(tmp_path: Path) -> None:
    config = tmp_path / "kernel.toml"
    text = CONFIG.read_text()
    config.write_text(text[: text.index("[app]")] + '[app]\nname = "no-secrets"\n')
    result = subprocess.run(
        [sys.executable, "-m", "kernel", "--config", str(config), "serve",
         "--app", "examples.service.app:app", "--port", str(free_port())],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "app.jwt_secret: required key is missing" in result.stderr
    assert "app.session_secret: required key is missing" in result.stderr


def test_config_show_masks_the_app_secrets() -> None:
    shown = kernel("config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "jwt_secret" in shown.stdout
    for secret in SECRETS:
        assert secret not in shown.stdout
