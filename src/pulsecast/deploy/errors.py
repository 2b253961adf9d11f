"""Errors of ``pulsecast deploy``: each is one line on stderr and exit code 1."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, TypeVar

from pulsecast.errors import PulsecastError

__all__ = [
    "DeployError",
    "UnknownChoiceError",
    "UnknownRoleError",
    "UnknownTemplateError",
    "choose",
]

T = TypeVar("T")


class DeployError(PulsecastError):
    """A deployment cannot be planned or run."""


class UnknownChoiceError(DeployError):
    """A name is not one of those there are.

    Attributes:
        name: The name that was asked for.
        known: The names there are, sorted.
    """

    kind: ClassVar[str] = "name"

    def __init__(self, name: str, known: Mapping[str, object]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.known)}")


class UnknownTemplateError(UnknownChoiceError):
    """The template asked for is not one of pulsecast's."""

    kind = "template"


class UnknownRoleError(UnknownChoiceError):
    """The node role asked for is not one the templates' instances take."""

    kind = "node role"


def choose(table: Mapping[str, T], name: str, error: type[UnknownChoiceError]) -> T:
    """``table[name]``, or ``error`` naming the choices there are.

    Raises:
        UnknownChoiceError: ``name`` is not in ``table`` (as the subclass ``error``).
    """
    found = table.get(name)
    if found is None:
        raise error(name, table)
    return found
