"""The kernels' event kinds, sync rules, book states and checksum modes are plain ints in
``monitor.book.layout`` (numba folds them into the compiled code); the Python side speaks
``EventKind``, ``SeqRule``, ``BookState`` and ``feeds.contract.Checksum``. They must agree.
"""

from __future__ import annotations

from enum import IntEnum

import pytest

from feeds.contract import Checksum
from monitor.book import kernels, layout
from monitor.domain import BookState, EventKind, SeqRule

PREFIXES: dict[str, type[IntEnum]] = {
    "KIND_": EventKind,
    "RULE_": SeqRule,
    "STATE_": BookState,
    "CHECK_": Checksum,
}


@pytest.mark.parametrize(("prefix", "enum"), PREFIXES.items())
def test_every_enum_member_has_a_layout_constant_of_the_same_value(
    prefix: str, enum: type[IntEnum]
) -> None:
    for member in enum:
        name = prefix + member.name
        assert hasattr(layout, name), f"layout has no {name} for {enum.__name__}.{member.name}"
        assert getattr(layout, name) == int(member), name


@pytest.mark.parametrize(("prefix", "enum"), PREFIXES.items())
def test_every_layout_constant_names_an_enum_member_of_the_same_value(
    prefix: str, enum: type[IntEnum]
) -> None:
    names = [n for n in vars(layout) if n.startswith(prefix)]
    assert names
    for name in names:
        value = getattr(layout, name)
        assert type(value) is int, f"{name} must be a plain int for numba"
        assert enum[name.removeprefix(prefix)] == value, name


def test_the_kernels_keep_no_copies_of_their_own() -> None:
    """One definition: the kernels import the layout's names instead of defining theirs."""
    for own in ("EMPTY", "SYNCING", "LIVE", "CONTIGUOUS", "PREVIOUS", "CHAIN", "NONE"):
        assert not hasattr(kernels, own), f"kernels defines its own {own}"
