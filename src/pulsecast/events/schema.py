"""Per-stream schemas compiled from configuration into fast validators.

A stream's :class:`~pulsecast.config.StreamSpec` (field names, types, required,
ranges, choices) is compiled once into msgspec types, so validating and
serialising an event runs in msgspec's C code: decoding JSON *is* validation,
and the first problem found becomes a :class:`~pulsecast.events.envelope.Rejection`
naming the field and what was wrong.

Sits at the start of the flow: sources validate here before anything reaches
Kafka, and the stream job reads what was written here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from pulsecast.config import FieldSpec, StreamSpec
from pulsecast.events.envelope import Rejection, rejection_from_msgspec
from pulsecast.events.errors import UnknownStreamError

__all__ = ["SchemaRegistry", "StreamSchema", "ValidationResult"]

ValidationResult = msgspec.Struct | Rejection

_TzDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


def _field_type(spec: FieldSpec) -> Any:
    base: Any
    if spec.type == "float":
        base = float
    elif spec.type == "int":
        base = int
    elif spec.type == "bool":
        base = bool
    elif spec.type == "timestamp":
        base = _TzDatetime
    elif spec.choices:
        base = Literal[tuple(spec.choices)]
    else:
        base = str
    if spec.min is not None or spec.max is not None:
        lo, hi = spec.min, spec.max
        if spec.type == "int":  # integer bounds for integer fields
            lo = None if lo is None else math.ceil(lo)
            hi = None if hi is None else math.floor(hi)
        base = Annotated[base, msgspec.Meta(ge=lo, le=hi)]
    return base if spec.required else base | None


def _new_event_id() -> str:
    return os.urandom(16).hex()


class StreamSchema:
    """The compiled schema of one stream.

    ``validate_*`` methods return the typed event (an envelope struct whose
    ``event_id``, ``stream``, ``key`` and ``ingest_time`` are filled in) or a
    :class:`Rejection`; they never raise for bad data.

    Args:
        name: Stream name.
        spec: The stream's declaration from configuration.
    """

    def __init__(self, name: str, spec: StreamSpec) -> None:
        self.name = name
        self.spec = spec
        self.key_field = spec.key_field
        type_name = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
        payload_fields = [
            (fname, _field_type(f)) if f.required else (fname, _field_type(f), None)
            for fname, f in spec.fields.items()
        ]
        self.payload_type: type[msgspec.Struct] = msgspec.defstruct(
            f"{type_name}Payload",
            payload_fields,
            forbid_unknown_fields=True,
            kw_only=True,
            gc=False,  # scalars only: no cycles, and no GC passes while decoding big batches
        )
        self.event_type: type[msgspec.Struct] = msgspec.defstruct(
            f"{type_name}Event",
            [
                ("event_id", str | None, None),
                ("stream", str | None, None),
                ("key", str | None, None),
                ("event_time", _TzDatetime),
                ("ingest_time", _TzDatetime | None, None),
                ("payload", self.payload_type),
            ],
            forbid_unknown_fields=True,
            kw_only=True,
            gc=False,
        )
        self._decoder = msgspec.json.Decoder(self.event_type)
        self._batch_type: Any = list[self.event_type]  # type: ignore[name-defined]
        self._batch_decoder = msgspec.json.Decoder(self._batch_type)
        self._raw_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
        self._encoder = msgspec.json.Encoder()

    def _complete(self, events: list[Any], ingest_time: datetime) -> list[ValidationResult]:
        """Fill in what the sender may omit, and check what it may not contradict."""
        key_field = self.key_field
        name = self.name
        ids = os.urandom(16 * len(events)).hex()
        out: list[ValidationResult] = []
        append = out.append
        for i, event in enumerate(events):
            key = getattr(event.payload, key_field)
            if event.key is None:
                event.key = key
            elif event.key != key:
                append(
                    Rejection(
                        "key_mismatch",
                        "key",
                        f"key: {event.key!r} differs from payload.{key_field} {key!r}",
                    )
                )
                continue
            if event.stream is None:
                event.stream = name
            elif event.stream != name:
                text = f"stream: {event.stream!r} sent to {name!r}"
                append(Rejection("stream_mismatch", "stream", text))
                continue
            if event.event_id is None:
                event.event_id = ids[32 * i : 32 * i + 32]
            if event.ingest_time is None:
                event.ingest_time = ingest_time
            append(event)
        return out

    def validate_json(self, raw: bytes, *, ingest_time: datetime | None = None) -> ValidationResult:
        """Decode and validate one JSON-encoded event.

        Args:
            raw: The event as received.
            ingest_time: Stamp for events that carry none; default now.

        Returns:
            The typed event, or why it was refused.
        """
        try:
            event = self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            return rejection_from_msgspec(str(exc))
        except msgspec.DecodeError as exc:
            return Rejection("malformed_json", None, f"malformed JSON: {exc}")
        return self._complete([event], ingest_time or datetime.now(UTC))[0]

    def validate_json_many(
        self, raws: list[bytes] | list[msgspec.Raw], *, ingest_time: datetime | None = None
    ) -> list[ValidationResult]:
        """Validate many JSON-encoded events; one result per input, in order."""
        now = ingest_time or datetime.now(UTC)
        decode = self._decoder.decode
        events: list[Any] = []
        results: list[ValidationResult | None] = []
        for raw in raws:
            try:
                events.append(decode(raw))
                results.append(None)
            except msgspec.ValidationError as exc:
                results.append(rejection_from_msgspec(str(exc)))
            except msgspec.DecodeError as exc:
                results.append(Rejection("malformed_json", None, f"malformed JSON: {exc}"))
        return _merge(results, self._complete(events, now))

    def decode_batch(
        self, body: bytes, *, ingest_time: datetime | None = None
    ) -> list[ValidationResult]:
        """Validate a JSON array of events in one pass; one result per element.

        The whole array is decoded and validated in C; only when some element
        is invalid are the elements validated one by one to say which and why.

        Raises:
            msgspec.DecodeError: ``body`` is not a JSON array.
        """
        now = ingest_time or datetime.now(UTC)
        try:
            events = self._batch_decoder.decode(body)
        except msgspec.ValidationError:
            raws = self._raw_batch_decoder.decode(body)
            return self.validate_json_many(raws, ingest_time=now)
        return self._complete(events, now)

    def split_batch(self, body: bytes) -> list[msgspec.Raw]:
        """The elements of a JSON array, undecoded (to dead-letter them as received)."""
        return self._raw_batch_decoder.decode(body)

    def validate_obj(
        self, obj: Mapping[str, Any], *, ingest_time: datetime | None = None, strict: bool = True
    ) -> ValidationResult:
        """Validate one event given as Python objects.

        Args:
            obj: Mapping with at least ``event_time`` and ``payload``.
            ingest_time: Stamp for events that carry none; default now.
            strict: When False, strings are converted to numbers, booleans and
                times where they parse (CSV input).

        Returns:
            The typed event, or why it was refused.
        """
        return self.validate_many([obj], ingest_time=ingest_time, strict=strict)[0]

    def validate_many(
        self,
        objs: list[Any],
        *,
        ingest_time: datetime | None = None,
        strict: bool = True,
    ) -> list[ValidationResult]:
        """Validate many events given as Python objects; one result per input, in order.

        The batch is converted in one call to msgspec (C); only a batch with an
        invalid event is converted again one event at a time to find it.
        """
        now = ingest_time or datetime.now(UTC)
        try:
            events = msgspec.convert(objs, self._batch_type, strict=strict)
        except msgspec.ValidationError:
            pass
        else:
            return self._complete(events, now)
        valid: list[Any] = []
        results: list[ValidationResult | None] = []
        for obj in objs:
            try:
                valid.append(msgspec.convert(obj, self.event_type, strict=strict))
                results.append(None)
            except msgspec.ValidationError as exc:
                results.append(rejection_from_msgspec(str(exc)))
        return _merge(results, self._complete(valid, now))

    def encode(self, event: msgspec.Struct) -> bytes:
        """Serialise a validated event to its wire form (JSON)."""
        return self._encoder.encode(event)

    def encode_many(self, events: list[Any]) -> list[bytes]:
        """Serialise many validated events in one call (JSON, one bytes each)."""
        if not events:
            return []
        # JSON never holds a raw newline inside a value, so lines split cleanly.
        return self._encoder.encode_lines(events).split(b"\n")[:-1]

    def decode(self, raw: bytes) -> Any:
        """Decode a wire event known to be valid (written by :meth:`encode`)."""
        return self._decoder.decode(raw)


def _merge(
    slots: list[ValidationResult | None], completed: list[ValidationResult]
) -> list[ValidationResult]:
    """Put completed events back into the slots that validated (marked None)."""
    done = iter(completed)
    return [next(done) if slot is None else slot for slot in slots]


class SchemaRegistry:
    """Every configured stream's compiled schema, by name.

    Args:
        streams: The ``streams`` section of the settings.
    """

    def __init__(self, streams: Mapping[str, StreamSpec]) -> None:
        self._schemas = {name: StreamSchema(name, spec) for name, spec in streams.items()}

    def __getitem__(self, stream: str) -> StreamSchema:
        try:
            return self._schemas[stream]
        except KeyError:
            raise UnknownStreamError(stream, list(self._schemas)) from None

    def __contains__(self, stream: object) -> bool:
        return stream in self._schemas

    def names(self) -> Iterable[str]:
        """The configured stream names."""
        return self._schemas.keys()
