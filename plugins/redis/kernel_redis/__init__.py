"""milo-kernel ``redis`` plugin: the shared Redis connection, or an embedded private redis-server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs read
    from kernel import redact_url as redact_url

    from ._checks import check_redis_url as check_redis_url
    from ._clients import AnyRedis as AnyRedis
    from ._clients import AnySyncRedis as AnySyncRedis
    from ._clients import SentinelMasterClient as SentinelMasterClient
    from ._clients import connect as connect
    from ._clients import connect_sync as connect_sync
    from ._config import EmbeddedConfig as EmbeddedConfig
    from ._config import RedisConfig as RedisConfig
    from ._config import check_url as check_url
    from ._connection import RedisConnection as RedisConnection
    from ._connection import TopologyMismatchError as TopologyMismatchError
    from ._durability import CrossSlotWriteError as CrossSlotWriteError
    from ._durability import ReplicationTimeoutError as ReplicationTimeoutError
    from ._durability import WriteFn as WriteFn
    from ._layouts import KeyLayout as KeyLayout
    from ._layouts import KeyLayouts as KeyLayouts
    from ._migrate import KeyMove as KeyMove
    from ._migrate import MigrationReport as MigrationReport
    from ._migrate import migrate_keys as migrate_keys
    from ._observe import CommandEnded as CommandEnded
    from ._observe import RedisEndpoint as RedisEndpoint
    from ._observe import RedisObserver as RedisObserver
    from ._plugin import RedisPlugin as RedisPlugin
    from ._server import RedisServer as RedisServer
    from ._server import RedisServerError as RedisServerError
    from ._server import find_redis_server as find_redis_server
    from ._server import free_port as free_port
    from ._service import ClientOptions as ClientOptions
    from ._service import HostClient as HostClient
    from ._service import RedisService as RedisService
    from ._service import RedisUnavailableError as RedisUnavailableError
    from ._service import find_redis as find_redis
    from ._service import redis_available as redis_available
    from ._service import use_redis as use_redis
    from ._topology import NodeStatus as NodeStatus
    from ._topology import RedisHealthError as RedisHealthError
    from ._topology import TopologyReport as TopologyReport
    from ._topology import inspect_topology as inspect_topology
    from ._url import MultiHostUrl as MultiHostUrl
    from ._url import Topology as Topology
    from ._url import hash_tag as hash_tag
    from ._url import key_slot as key_slot
    from ._url import parse_multi_host as parse_multi_host
    from ._url import topology_of as topology_of
else:  # PEP 562: a submodule is imported on first use of one of its names
    _EXPORTS = {  # submodule -> the public names it defines
        "kernel": ["redact_url"],
        "._checks": ["check_redis_url"],
        "._clients": ["AnyRedis", "AnySyncRedis", "SentinelMasterClient", "connect", "connect_sync"],
        "._config": ["EmbeddedConfig", "RedisConfig", "check_url"],
        "._connection": ["RedisConnection", "TopologyMismatchError"],
        "._durability": ["CrossSlotWriteError", "ReplicationTimeoutError", "WriteFn"],
        "._layouts": ["KeyLayout", "KeyLayouts"],
        "._migrate": ["KeyMove", "MigrationReport", "migrate_keys"],
        "._observe": ["CommandEnded", "RedisEndpoint", "RedisObserver"],
        "._plugin": ["RedisPlugin"],
        "._server": ["RedisServer", "RedisServerError", "find_redis_server", "free_port"],
        "._service": [
            "ClientOptions",
            "HostClient",
            "RedisService",
            "RedisUnavailableError",
            "find_redis",
            "redis_available",
            "use_redis",
        ],
        "._topology": ["NodeStatus", "RedisHealthError", "TopologyReport", "inspect_topology"],
        "._url": ["MultiHostUrl", "Topology", "hash_tag", "key_slot", "parse_multi_host", "topology_of"],
    }
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
