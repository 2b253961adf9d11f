"""The Kafka bus: topics, admin, the validating producer, consumers."""

from __future__ import annotations

from pulsecast.bus.admin import TopicAdmin as TopicAdmin
from pulsecast.bus.consumer import EventConsumer as EventConsumer
from pulsecast.bus.consumer import Record as Record
from pulsecast.bus.errors import BusError as BusError
from pulsecast.bus.errors import ProduceError as ProduceError
from pulsecast.bus.producer import EventProducer as EventProducer
from pulsecast.bus.producer import SendReport as SendReport
from pulsecast.bus.topics import topic_name as topic_name

__all__ = [
    "BusError",
    "EventConsumer",
    "EventProducer",
    "ProduceError",
    "Record",
    "SendReport",
    "TopicAdmin",
    "topic_name",
]
