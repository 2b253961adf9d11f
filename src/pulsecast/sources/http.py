"""HTTP ingest: ``POST /v1/streams/{stream}/events`` with a batch of events.

The semantics of Kinesis ``PutRecords``: each event of the batch is validated
on its own and the answer says, per event and in order, whether it was
accepted (with its event id) or rejected (with reason, field and message).
Rejected events are also sent, as received, to ``<stream>.dlq``, so nothing is
lost. The answer is sent once Kafka has acknowledged every event of the batch
(acks=all), so "accepted" means durably stored.

The body is ``{"events": [...]}`` or a bare JSON array; a batch whose events
are all valid is decoded and validated in one pass of msgspec's C code.

Answers: 200 with per-event results; 400 when the body is not a batch;
404 for an unknown stream; 413 for a body or batch over the limits (a body is
refused as soon as it is too big, before the rest is read); 503 with
``Retry-After`` when Kafka did not acknowledge in time (per-event status
``failed`` then says which events to resend).

With ``security.enabled``, a POST needs an API key with the ``ingest`` role
(``Authorization: Bearer <key>`` or ``X-API-Key``): 401 without a valid one,
403 without the role, 429 with ``Retry-After`` over the per-key or
per-address rate limit (:mod:`pulsecast.security.guard`), and the endpoint
serves HTTPS only, with the local CA's ``ingest`` certificate
(:mod:`pulsecast.security.tls`). Security off, the endpoint takes anyone over
plain HTTP, as before.

``GET /metrics`` serves the endpoint's Prometheus metrics
(``pulsecast_ingest_*`` of :mod:`pulsecast.monitoring.metrics`): requests by
status code and their latency, events accepted, rejected by reason and failed,
and the events Kafka did not acknowledge.

Every answer carries ``X-Request-ID``: the client's own when it sent a usable
one, else a new id. Each event the request stores in ``<stream>.events``
carries it as the Kafka header ``pulsecast-correlation-id``, and the streaming
job logs the ids of each micro-batch (:mod:`pulsecast.monitoring.correlation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
from confluent_kafka import KafkaError, Message
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pulsecast.bus.errors import ProduceError
from pulsecast.bus.producer import EventProducer
from pulsecast.bus.topics import topic_name
from pulsecast.config import Settings
from pulsecast.events.envelope import Rejection
from pulsecast.events.schema import SchemaRegistry
from pulsecast.monitoring import metrics
from pulsecast.monitoring.correlation import CORRELATION_HEADER, REQUEST_ID_HEADER, request_id
from pulsecast.security.guard import IngestGuard
from pulsecast.security.tls import uvicorn_options

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode


class _Body(msgspec.Struct):
    events: msgspec.Raw


_body_decoder = msgspec.json.Decoder(_Body)


def _json(status: int, content: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(content), status, headers, media_type="application/json")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"error": message}, headers)


class _BatchDelivery:
    """Counts Kafka's acknowledgements of one request's messages."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pending: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.pending = pending
        self.failed: dict[int, str] = {}
        self._lock = threading.Lock()
        if pending == 0:
            self.future.set_result(None)

    def for_index(self, index: int) -> functools.partial[None]:
        return functools.partial(self._done, index)

    def _done(self, index: int, err: KafkaError | None, _msg: Message) -> None:
        with self._lock:
            if err is not None:
                self.failed[index] = err.str()
            self.pending -= 1
            finished = self.pending == 0
        if finished:
            self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


def _split_body(body: bytes) -> bytes:
    """The raw JSON array of events from either accepted body shape."""
    if body.lstrip()[:1] == b"[":
        return body
    return bytes(_body_decoder.decode(body).events)


def create_app(settings: Settings) -> FastAPI:
    """Build the ingest application for ``settings``."""
    registry = SchemaRegistry(settings.streams)
    limits = settings.ingest
    holder: dict[str, EventProducer] = {}
    guard = IngestGuard.from_settings(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        producer = EventProducer(settings, source="http", registry=registry, report_all=True)
        holder["producer"] = producer
        stop = threading.Event()

        def poll_loop() -> None:
            while not stop.is_set():
                producer.poll(0.05)

        poller = threading.Thread(target=poll_loop, name="kafka-poll", daemon=True)
        poller.start()
        log.info("HTTP ingest ready on %s", limits.url)
        try:
            yield
        finally:
            stop.set()
            poller.join(timeout=5)
            # The app object may outlive its server (tests keep it): shut the producer
            # down, or librdkafka's threads keep retrying a broker that is gone.
            holder.pop("producer", None)
            try:
                producer.close(10)
            except ProduceError as exc:
                log.error("ingest stopped with events unacknowledged: %s", exc)

    app = FastAPI(
        title="pulsecast ingest",
        version="1",
        summary="Batches of events into pulsecast streams, validated per event.",
        lifespan=lifespan,
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the endpoint is serving."""
        return {"status": "ok", "streams": sorted(registry.names())}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """The endpoint's metrics in Prometheus's text format."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/streams/{stream}/events")
    async def ingest(stream: str, request: Request) -> Response:
        """Validate a batch of events; produce the valid ones, dead-letter the rest."""
        started = time.perf_counter()
        correlation = request_id(request.headers.get(REQUEST_ID_HEADER))
        refusal = None
        if guard is not None:
            address = request.client.host if request.client else "unknown"
            refusal = await asyncio.to_thread(
                guard.check, request.headers, address, "ingest", target=stream
            )
        if refusal is not None:
            response = _error(refusal.status, refusal.message, refusal.headers)
        else:
            response = await handle(stream, request, correlation)
        # Only configured streams become label values: the label set stays bounded.
        label = stream if stream in registry else "unknown"
        metrics.INGEST_REQUESTS.labels(label, str(response.status_code)).inc()
        metrics.INGEST_REQUEST_SECONDS.labels(label).observe(time.perf_counter() - started)
        response.headers[REQUEST_ID_HEADER] = correlation
        return response

    async def handle(stream: str, request: Request, correlation: str) -> Response:
        if stream not in registry:
            return _error(
                404, f"unknown stream {stream!r}; configured: {', '.join(sorted(registry.names()))}"
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            return _error(413, f"body of {declared} bytes exceeds {limits.max_body_bytes}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:  # refused before the rest is read
                return _error(413, f"body exceeds {limits.max_body_bytes} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        schema = registry[stream]
        try:
            array = _split_body(body)
            raws = schema.split_batch(array)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error(400, f'body must be {{"events": [...]}} or a JSON array: {exc}')
        if len(raws) > limits.max_batch_events:
            return _error(413, f"batch of {len(raws)} events exceeds {limits.max_batch_events}")
        metrics.INGEST_BATCH_EVENTS.labels(stream).observe(len(raws))
        results = schema.decode_batch(array, ingest_time=datetime.now(UTC))
        producer = holder["producer"]
        delivery = _BatchDelivery(asyncio.get_running_loop(), len(results))
        valid_idx = [i for i, r in enumerate(results) if not isinstance(r, Rejection)]
        valid = [results[i] for i in valid_idx]
        topic = topic_name(stream, "events")
        # Every record of the request carries its id: the streaming job logs it per batch.
        headers = [(CORRELATION_HEADER, correlation.encode())]
        for index, value in zip(valid_idx, schema.encode_many(valid), strict=True):
            producer.produce_raw(
                topic,
                value,
                results[index].key,  # type: ignore[union-attr]
                headers,
                on_delivery=delivery.for_index(index),
            )
        for index, result in enumerate(results):
            if isinstance(result, Rejection):
                producer.dead_letter(
                    stream,
                    bytes(raws[index]),
                    result,
                    on_delivery=delivery.for_index(index),
                    extra_headers=headers,
                )
        try:
            await asyncio.wait_for(asyncio.shield(delivery.future), limits.delivery_timeout_s)
        except TimeoutError:
            metrics.INGEST_EVENTS.labels(stream, "failed").inc(delivery.pending)
            metrics.INGEST_PRODUCE_ERRORS.labels(stream, "timeout").inc(delivery.pending)
            return _error(
                503,
                f"Kafka did not acknowledge within {limits.delivery_timeout_s} s",
                {"Retry-After": "5"},
            )
        answers: list[dict[str, Any]] = []
        accepted = rejected = failed = 0
        reasons: Counter[str] = Counter()
        for index, result in enumerate(results):
            if index in delivery.failed:
                failed += 1
                answers.append(
                    {
                        "index": index,
                        "status": "failed",
                        "reason": "delivery_failed",
                        "message": delivery.failed[index],
                    }
                )
            elif isinstance(result, Rejection):
                rejected += 1
                reasons[result.reason] += 1
                answers.append({"index": index, "status": "rejected", **result.as_dict()})
            else:
                accepted += 1
                answers.append({"index": index, "status": "accepted", "event_id": result.event_id})  # type: ignore[attr-defined]
        _count_events(stream, reasons, accepted=accepted, failed=failed)
        content = {
            "stream": stream,
            "accepted": accepted,
            "rejected": rejected,
            "failed": failed,
            "results": answers,
        }
        if failed:
            return _json(503, content, {"Retry-After": "5"})
        return _json(200, content)

    return app


def _count_events(stream: str, reasons: Counter[str], *, accepted: int, failed: int) -> None:
    """Record one answered batch's outcome in the ingest metrics."""
    metrics.INGEST_EVENTS.labels(stream, "accepted").inc(accepted)
    metrics.INGEST_EVENTS.labels(stream, "rejected").inc(sum(reasons.values()))
    for reason, count in reasons.items():
        metrics.INGEST_REJECTIONS.labels(stream, reason).inc(count)
    if failed:
        metrics.INGEST_EVENTS.labels(stream, "failed").inc(failed)
        metrics.INGEST_PRODUCE_ERRORS.labels(stream, "delivery").inc(failed)


def serve(settings: Settings) -> None:
    """Run the ingest endpoint in the foreground until interrupted (HTTPS when ``ingest.tls``).

    Raises:
        CertificateError: It serves HTTPS and its certificate is missing.
    """
    import uvicorn

    options = uvicorn_options(settings, "ingest")
    uvicorn.run(
        create_app(settings),
        host=settings.ingest.host,
        port=settings.ingest.port,
        log_level="warning",
        access_log=False,
        **options,
    )
