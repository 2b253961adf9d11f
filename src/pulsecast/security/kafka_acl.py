"""Kafka in secure mode: the principals, their SCRAM passwords and their least-privilege ACLs.

With ``security.enabled`` the local broker (:mod:`pulsecast.services.kafka`)
accepts clients only over SASL_SSL with SCRAM-SHA-512, and its KRaft
``StandardAuthorizer`` denies whatever no ACL allows. This module says who
may do what, and keeps the passwords.

Principals: ``producer``, ``stream``, ``dashboard`` and ``admin`` are the
clients' (:data:`~pulsecast.security.certs.CLIENT_PRINCIPALS`); ``kafka`` is
the broker itself (its inter-broker login). ``admin`` and ``kafka`` are super
users; the others get exactly the ACLs of :func:`acl_rules`:

* ``producer`` writes ``<stream>.events`` (and ``<stream>.dlq``: what it rejects);
* ``stream`` reads ``<stream>.events`` and writes ``<stream>.dlq``,
  ``.predictions`` and ``.alerts``;
* ``dashboard`` reads ``.dlq``, ``.predictions`` and ``.alerts``;
* ``stream`` and ``dashboard`` use the consumer groups of
  :data:`GROUP_PREFIXES`. Nobody but ``admin`` creates, deletes or alters
  topics, or manages ACLs.

Kafka matches ACL resource names literally or by prefix, never by suffix, so
``*.events`` cannot be one ACL: every topic gets LITERAL ACLs chosen by its
suffix when :class:`~pulsecast.bus.admin.TopicAdmin` ensures it (a topic
without a known suffix gets none: only ``admin`` can touch it). A PREFIXED
``<stream>.`` ACL would have granted a principal every future topic of the
stream, which is what least privilege rules out.

Passwords: 32 random bytes (base64url) per principal, made once by
:func:`ensure_passwords` in ``<security dir>/kafka/passwords/<principal>``
(files ``0600``, folder ``0700``), never in a configuration file and never
logged. :func:`rotate_password` changes one through the admin API.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from pulsecast.security._files import private_dir, security_dir, write_private
from pulsecast.security.audit import record
from pulsecast.security.errors import SecurityError

if TYPE_CHECKING:
    from confluent_kafka.admin import AclBinding, AdminClient  # type: ignore[attr-defined]

    from pulsecast.config import Settings

__all__ = [
    "BROKER_PRINCIPAL",
    "GROUP_PREFIXES",
    "PRINCIPALS",
    "SCRAM_MECHANISM",
    "SUPER_USERS",
    "AclRule",
    "Principal",
    "acl_rules",
    "ensure_acls",
    "ensure_passwords",
    "group_rules",
    "kafka_security_dir",
    "password_file",
    "read_password",
    "reader_of",
    "remove_acls",
    "rotate_password",
    "topic_rules",
    "truststore_file",
]

log = logging.getLogger(__name__)

Principal = Literal["producer", "stream", "dashboard", "admin", "kafka"]
#: Every SCRAM user the broker knows: the four clients and the broker itself.
PRINCIPALS: tuple[Principal, ...] = get_args(Principal)
BROKER_PRINCIPAL: Principal = "kafka"
#: Principals that every operation is allowed to (no ACL needed).
SUPER_USERS: tuple[Principal, ...] = ("admin", "kafka")
SCRAM_MECHANISM = "SCRAM-SHA-512"

Operation = Literal["READ", "WRITE"]
ResourceType = Literal["TOPIC", "GROUP"]
PatternType = Literal["LITERAL", "PREFIXED"]

#: Consumer groups by principal (PREFIXED): Spark's Kafka source names its
#: groups ``spark-kafka-source-...``; :class:`~pulsecast.bus.consumer.EventConsumer`
#: names throwaway ones ``pulsecast-reader-...``.
GROUP_PREFIXES: dict[Principal, tuple[str, ...]] = {
    "stream": ("spark-kafka-source", "pulsecast-stream", "pulsecast-reader-"),
    "dashboard": ("pulsecast-dashboard", "pulsecast-reader-"),
}

#: Topic suffix -> (principal, operation) pairs it grants.
_TOPIC_RIGHTS: dict[str, tuple[tuple[Principal, Operation], ...]] = {
    "events": (("producer", "WRITE"), ("stream", "READ")),
    # Producers validate before Kafka and dead-letter what they reject (the ingest, the
    # simulator, file replays), as the job does for what fails its checks.
    "dlq": (("producer", "WRITE"), ("stream", "WRITE"), ("dashboard", "READ")),
    "predictions": (("stream", "WRITE"), ("dashboard", "READ")),
    "alerts": (("stream", "WRITE"), ("dashboard", "READ")),
}


@dataclass(frozen=True, order=True)
class AclRule:
    """One ALLOW ACL: ``principal`` may ``operation`` on a topic or group.

    READ and WRITE imply DESCRIBE in Kafka, so no DESCRIBE rule is needed.
    """

    principal: Principal
    resource_type: ResourceType
    name: str
    pattern: PatternType
    operation: Operation

    def __str__(self) -> str:
        kind = "prefix" if self.pattern == "PREFIXED" else "name"
        return (
            f"User:{self.principal} {self.operation} {self.resource_type.lower()} "
            f"{kind} {self.name}"
        )

    def binding(self) -> AclBinding:
        """The rule as confluent-kafka's ``AclBinding`` (host ``*``, ALLOW)."""
        from confluent_kafka.admin import (  # type: ignore[attr-defined]
            AclBinding,
            AclOperation,
            AclPermissionType,
            ResourcePatternType,
            ResourceType,
        )

        return AclBinding(
            ResourceType[self.resource_type],
            self.name,
            ResourcePatternType[self.pattern],
            f"User:{self.principal}",
            "*",
            AclOperation[self.operation],
            AclPermissionType.ALLOW,
        )


def reader_of(topic: str) -> Principal:
    """The principal that may read ``topic``: ``stream`` for events, ``dashboard`` for the rest."""
    suffix = topic.rsplit(".", 1)[-1]
    readers = [p for p, op in _TOPIC_RIGHTS.get(suffix, ()) if op == "READ"]
    return readers[0] if readers else "admin"


def topic_rules(topics: Iterable[str]) -> list[AclRule]:
    """The LITERAL topic ACLs of ``topics``, chosen by each one's suffix."""
    rules = []
    for topic in topics:
        suffix = topic.rsplit(".", 1)[-1] if "." in topic else ""
        for principal, operation in _TOPIC_RIGHTS.get(suffix, ()):
            rules.append(AclRule(principal, "TOPIC", topic, "LITERAL", operation))
    return rules


def group_rules() -> list[AclRule]:
    """The PREFIXED consumer-group ACLs of :data:`GROUP_PREFIXES`."""
    return [
        AclRule(principal, "GROUP", prefix, "PREFIXED", "READ")
        for principal, prefixes in GROUP_PREFIXES.items()
        for prefix in prefixes
    ]


def acl_rules(topics: Iterable[str]) -> list[AclRule]:
    """Every ACL that ``topics`` need, plus the consumer groups', sorted."""
    return sorted(set(topic_rules(topics) + group_rules()))


def _key(principal: str, rtype: str, name: str, pattern: str, operation: str) -> tuple[str, ...]:
    return (principal, rtype, name, pattern, operation)


def _existing(admin: AdminClient, timeout_s: float) -> set[tuple[str, ...]]:
    """The ALLOW ACLs the broker holds, as comparable keys."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    query = AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]  # None matches any (confluent-kafka's docs)
        ResourcePatternType.ANY,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        AclOperation.ANY,
        AclPermissionType.ALLOW,
    )
    found = admin.describe_acls(query, request_timeout=timeout_s).result()
    return {
        _key(
            b.principal.removeprefix("User:"),
            b.restype.name,
            b.name,
            b.resource_pattern_type.name,
            b.operation.name,
        )
        for b in found
    }


def _wait_visible(admin: AdminClient, rules: list[AclRule], timeout_s: float) -> None:
    """Wait until the broker's authorizer holds ``rules``.

    The controller commits new ACLs before it answers, but the broker applies
    them when it replays the metadata log, a moment later; until then a client
    would still be refused (and a second :func:`ensure_acls` would not see them).
    """
    keys = {_key(r.principal, r.resource_type, r.name, r.pattern, r.operation) for r in rules}
    deadline = time.monotonic() + timeout_s
    while not keys <= _existing(admin, timeout_s):
        if time.monotonic() > deadline:
            msg = f"Kafka ACLs not in effect after {timeout_s:g} s"
            raise SecurityError(msg)
        time.sleep(0.05)


def ensure_acls(
    settings: Settings,
    admin: AdminClient,
    topics: Iterable[str],
    *,
    timeout_s: float = 30.0,
) -> list[AclRule]:
    """Create the ACLs ``topics`` and the consumer groups need and the broker lacks.

    Idempotent: ACLs present are left alone, so a second call creates
    nothing. What is created is recorded in the audit trail (``acl.create``).
    ``admin`` must be authenticated as a principal allowed to manage ACLs.

    Returns:
        The rules created now.

    Raises:
        SecurityError: The broker refused to list or create ACLs.
    """
    from confluent_kafka import KafkaException

    wanted = acl_rules(topics)
    try:
        have = _existing(admin, timeout_s)
        missing = [
            r
            for r in wanted
            if _key(r.principal, r.resource_type, r.name, r.pattern, r.operation) not in have
        ]
        if missing:
            futures = admin.create_acls([r.binding() for r in missing], request_timeout=timeout_s)
            for future in futures.values():
                future.result()
            _wait_visible(admin, missing, timeout_s)
    except KafkaException as exc:
        msg = f"cannot set Kafka ACLs: {exc.args[0].str()}"
        raise SecurityError(msg) from exc
    if missing:
        log.info("created %d Kafka ACLs", len(missing))
        record(
            settings,
            "acl.create",
            ",".join(sorted({r.name for r in missing})),
            details={"acls": [str(r) for r in missing]},
        )
    return missing


def remove_acls(
    settings: Settings,
    admin: AdminClient,
    topics: Iterable[str],
    *,
    timeout_s: float = 30.0,
) -> int:
    """Delete the topic ACLs of ``topics`` (Kafka keeps ACLs when a topic is deleted).

    Consumer-group ACLs are shared by every topic and stay. What is deleted is
    recorded in the audit trail (``acl.delete``).

    Returns:
        How many ACLs were deleted.

    Raises:
        SecurityError: The broker refused.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AclBindingFilter  # type: ignore[attr-defined]

    rules = topic_rules(topics)
    if not rules:
        return 0
    filters = []
    for rule in rules:
        b = rule.binding()
        filters.append(
            AclBindingFilter(
                b.restype,
                b.name,
                b.resource_pattern_type,
                b.principal,
                b.host,
                b.operation,
                b.permission_type,
            )
        )
    try:
        futures = admin.delete_acls(filters, request_timeout=timeout_s)
        deleted = sum(len(future.result()) for future in futures.values())
    except KafkaException as exc:
        msg = f"cannot delete Kafka ACLs: {exc.args[0].str()}"
        raise SecurityError(msg) from exc
    if deleted:
        record(
            settings,
            "acl.delete",
            ",".join(sorted({r.name for r in rules})),
            details={"acls": deleted},
        )
    return deleted


# -- passwords ---------------------------------------------------------------------------


def kafka_security_dir(settings: Settings) -> Path:
    """Kafka's part of the security folder: ``<security dir>/kafka``."""
    return security_dir(settings) / "kafka"


def truststore_file(settings: Settings) -> Path:
    """The CA bundle every Kafka client and the broker trust (made by ``security init``)."""
    return security_dir(settings) / "truststore.pem"


def password_file(settings: Settings, principal: Principal) -> Path:
    """Where ``principal``'s SCRAM password is kept (``0600``)."""
    return kafka_security_dir(settings) / "passwords" / principal


def _check(principal: str) -> None:
    if principal not in PRINCIPALS:
        msg = f"unknown Kafka principal {principal!r}; expected one of {', '.join(PRINCIPALS)}"
        raise SecurityError(msg)


def ensure_passwords(settings: Settings) -> list[Principal]:
    """Generate the password of every principal that has none yet.

    Returns:
        The principals whose password was created now.
    """
    folder = private_dir(kafka_security_dir(settings) / "passwords")
    private_dir(folder.parent)
    created: list[Principal] = []
    for principal in PRINCIPALS:
        path = password_file(settings, principal)
        if not path.is_file():
            write_private(path, secrets.token_urlsafe(32).encode())
            created.append(principal)
    if created:
        log.info("created Kafka passwords for %s", ", ".join(created))
    return created


def read_password(settings: Settings, principal: Principal) -> str:
    """``principal``'s SCRAM password.

    Raises:
        SecurityError: The principal is unknown or has no password yet (the
            broker's first secure start creates them).
    """
    _check(principal)
    path = password_file(settings, principal)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        msg = f"no Kafka password for {principal!r} in {path}; start Kafka with `pulsecast up`"
        raise SecurityError(msg) from None
    if not text:
        msg = f"empty Kafka password for {principal!r} in {path}"
        raise SecurityError(msg)
    return text


def rotate_password(
    settings: Settings, admin: AdminClient, principal: Principal, *, timeout_s: float = 30.0
) -> None:
    """Give ``principal`` a new random password, at the broker first, then in its file.

    Connections already open stay open; new ones need the new password. The
    broker's own (``kafka``) login reads its file when the broker starts, so
    rotate it only right before a restart.

    Raises:
        SecurityError: The principal is unknown or the broker refused the change.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    _check(principal)
    new = secrets.token_urlsafe(32)
    upsert = UserScramCredentialUpsertion(
        principal, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), new.encode()
    )
    try:
        for future in admin.alter_user_scram_credentials(
            [upsert], request_timeout=timeout_s
        ).values():
            future.result()
    except KafkaException as exc:
        msg = f"cannot change the Kafka password of {principal!r}: {exc.args[0].str()}"
        raise SecurityError(msg) from exc
    write_private(password_file(settings, principal), new.encode())
    record(settings, "kafka.password.rotate", principal)
    log.info("rotated the Kafka password of %s", principal)
