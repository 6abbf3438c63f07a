"""An example plugin: a greeting service, a health check, an HTTP route and a CLI command."""

from ._plugin import Greeter, HelloConfig, HelloPlugin

__all__ = ["Greeter", "HelloConfig", "HelloPlugin"]
