"""The hello plugin: everything a plugin can contribute, in one small file."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from importlib import metadata

import attrs

from kernel import Command, HealthCheck, Kernel, Plugin, PluginContext, Route, Secret, hookimpl, recommended
from kernel.web import ASGIApp, Receive, Scope, Send


@attrs.define(frozen=True)
class HelloConfig:
    """The ``[plugins.hello]`` table."""

    greeting: str = "Hello"
    shout: bool = False
    max_name_length: int = attrs.field(default=64, validator=attrs.validators.gt(0))
    api_key: Secret | None = recommended(reason="the /hello route is public without it")


class Greeter:
    """The service this plugin provides."""

    def __init__(self, config: HelloConfig) -> None:
        self._config = config
        self.greeted = 0

    def greet(self, name: str) -> str:
        if not name or len(name) > self._config.max_name_length:
            raise ValueError(f"name must be 1..{self._config.max_name_length} characters")
        self.greeted += 1
        text = f"{self._config.greeting}, {name}!"
        return text.upper() if self._config.shout else text


class HelloPlugin(Plugin):
    """Registers a ``Greeter``; serves ``GET /hello``; adds ``kernel hello NAME``."""

    name = "hello"
    version = metadata.version("milo-kernel-hello")  # one source: the distribution's pyproject.toml
    requires = ()
    optional = ("metrics",)
    config_class = HelloConfig
    provides = ("greeter", "Greeter")
    description = "Greets people."

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[HelloConfig]) -> AsyncIterator[None]:
        greeter = Greeter(ctx.config)
        ctx.provide(greeter, name="greeter")
        ctx.log.info("hello plugin ready", extra={"greeting": ctx.config.greeting})
        yield
        ctx.log.info("hello plugin stopping", extra={"greeted": greeter.greeted})

    @hookimpl
    def kernel_health_checks(self, ctx: PluginContext[HelloConfig]) -> list[HealthCheck]:
        async def can_greet() -> bool:
            return bool(ctx.registry.get(Greeter).greet("health"))

        return [HealthCheck("hello.greeter", can_greet, critical=False, timeout=1.0)]

    @hookimpl
    def kernel_routes(self, ctx: PluginContext[HelloConfig]) -> list[Route]:
        return [Route("/hello", _hello_endpoint(ctx.registry.get(Greeter)), name="hello")]

    @hookimpl
    def kernel_cli_commands(self) -> list[Command]:
        def add_arguments(parser: argparse.ArgumentParser) -> None:
            parser.add_argument("name", help="who to greet")

        async def run(args: argparse.Namespace, kernel: Kernel) -> int:
            try:
                print(kernel.get(Greeter).greet(args.name))
            except ValueError as exc:
                print(f"error: {exc}")
                return 2
            return 0

        return [Command("hello", "greet someone", run, add_arguments)]


def _hello_endpoint(greeter: Greeter) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        query = dict(
            part.split("=", 1) for part in scope.get("query_string", b"").decode().split("&") if "=" in part
        )
        try:
            status, body = 200, {"message": greeter.greet(query.get("name", "world"))}
        except ValueError as exc:
            status, body = 400, {"error": str(exc)}
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app
