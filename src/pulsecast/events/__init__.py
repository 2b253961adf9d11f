"""The event model: envelope, per-stream schemas, validation and serialisation."""

from __future__ import annotations

from pulsecast.events.envelope import REASONS as REASONS
from pulsecast.events.envelope import Rejection as Rejection
from pulsecast.events.errors import UnknownStreamError as UnknownStreamError
from pulsecast.events.schema import SchemaRegistry as SchemaRegistry
from pulsecast.events.schema import StreamSchema as StreamSchema

__all__ = ["REASONS", "Rejection", "SchemaRegistry", "StreamSchema", "UnknownStreamError"]
