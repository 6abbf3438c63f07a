"""``kernel check`` rules: settings that cannot work with the topology the URL names.

:func:`check_redis_url` is for any plugin with a Redis ``url`` of its own (cache, event bus,
queue, yours): its ``kernel_check`` returns what it finds, and the kernel shows each issue under
the plugin's key path (``plugins.cache.url: must not select a database other than 0 …``)::

    @hookimpl
    def kernel_check(self, ctx):
        return check_redis_url(ctx.config.url, key="url")
"""

from __future__ import annotations

from kernel import CheckIssue, Secret

from ._config import EMBEDDED, EmbeddedConfig, RedisConfig, check_url
from ._url import topology_of

_DEFAULT = RedisConfig()


def check_redis_url(
    url: str | Secret | None, *, key: str = "url", embedded: bool = False
) -> list[CheckIssue]:
    """Issues with a plugin's own Redis ``url`` (``None``: it has none, nothing to check).

    Every URL form of the redis plugin is accepted (``redis://``, ``rediss://``, ``unix://``,
    ``redis+cluster://``, ``redis+sentinel://`` and their TLS forms); a cluster URL must not name a
    database other than 0. ``"embedded"`` is refused unless ``embedded`` (the plugin can start one).
    Messages name the problem and show the URL only redacted.
    """
    if url is None:
        return []
    value = url.get_secret_value() if isinstance(url, Secret) else url
    if value == EMBEDDED and not embedded:
        return [
            CheckIssue.error(key, "must be a Redis URL; 'embedded' is the redis plugin's own server only")
        ]
    try:
        check_url(value)
    except ValueError as exc:
        message = str(exc)
        return [CheckIssue.error(key, message.removeprefix("'url' "))]
    return []


def check_settings(config: RedisConfig) -> list[CheckIssue]:
    """The redis plugin's own rules: settings its URL's topology cannot use."""
    topology = topology_of(config.url)
    if topology == "standalone":
        return []
    scheme = config.url.get_secret_value().partition("://")[0]
    issues: list[CheckIssue] = []
    if config.embedded != EmbeddedConfig():
        issues.append(
            CheckIssue.error(
                "embedded",
                f'applies only to url = "embedded" (a private single server), but url is a {scheme}:// URL: '
                "remove [plugins.redis.embedded]",
            )
        )
    if topology == "cluster" and config.pool_timeout != _DEFAULT.pool_timeout:
        issues.append(
            CheckIssue.warning(
                "pool_timeout",
                "is not used on a cluster: its client keeps max_connections per node and fails at once "
                "(MaxConnectionsError) when all are busy; raise max_connections instead",
            )
        )
    return issues
