"""The per-version contract with the stdlib code that ferroloop reuses.

``ferroloop.Loop`` borrows methods of asyncio's selector loop (``_BORROWED`` and the
class-level assignments in ``ferroloop/loop.py``) and subclasses some stdlib classes
(``SSLProtocol``, ``_SSLProtocolTransport``, ``_SelectorDatagramTransport``); it also
drives ``base_events.Server``. That code reads private loop state which changes with
every minor release (3.13 added ``_unix_server_sockets`` and ``Server._attach(transport)``).

This module makes such a change a loud test failure on the day a new CPython runs the
suite, instead of a silent failure for users:

* every borrowed function and reused class is fingerprinted (a hash of its source) and
  compared with ``stdlib_contract.json``, recorded per minor version after review; an
  unrecorded version, or any changed, added or removed piece, fails and names it;
* every ``self.<attribute>`` a borrowed function reads must exist on a fresh
  ``ferroloop.Loop`` (or be assigned by that function), and no borrowed function may
  use zero-argument ``super()`` (it would fail on a class that is not its own).

After reviewing the stdlib's changes for a new version (and fixing ferroloop), record it
with ``python tests/test_stdlib_contract.py --record``.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import pathlib
import sys
import textwrap
import types

import pytest

CONTRACT = pathlib.Path(__file__).with_name("stdlib_contract.json")
VERSION = "{}.{}".format(*sys.version_info[:2])


def _borrowed_functions() -> dict[str, types.FunctionType]:
    """Functions of asyncio that ``ferroloop.Loop`` and its TLS protocol use as their own."""
    from ferroloop import sslproto
    from ferroloop.loop import Loop

    found = {}
    for owner in (Loop, sslproto.SSLProtocol, sslproto):
        for name, value in vars(owner).items():
            if isinstance(value, types.FunctionType) and value.__module__.startswith("asyncio."):
                found[f"{owner.__name__}.{name} = {value.__module__}.{value.__qualname__}"] = value
    return found


def _reused_classes() -> dict[str, type]:
    """stdlib classes ferroloop subclasses or drives with its own transports."""
    from asyncio import base_events, selector_events, sslproto

    return {
        "base_events.Server": base_events.Server,
        "selector_events._SelectorDatagramTransport": selector_events._SelectorDatagramTransport,
        "sslproto.SSLProtocol": sslproto.SSLProtocol,
        "sslproto._SSLProtocolTransport": sslproto._SSLProtocolTransport,
    }


def fingerprints() -> dict[str, str]:
    """A hash of the source of every piece of the contract, by name."""
    pieces = {**_borrowed_functions(), **_reused_classes()}
    return {
        name: hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]
        for name, obj in sorted(pieces.items())
    }


def _self_attributes(fn: types.FunctionType) -> tuple[set[str], set[str], bool]:
    """(attributes of ``self`` read, attributes assigned, whether ``super()`` is called)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    loads, stores, bare_super = set(), set(), False
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            (stores if isinstance(node.ctx, ast.Store) else loads).add(node.attr)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "super"
            and not node.args
        ):
            bare_super = True
    return loads, stores, bare_super


def test_version_is_recorded_and_unchanged():
    recorded = json.loads(CONTRACT.read_text())
    if VERSION not in recorded:
        pytest.fail(
            f"CPython {VERSION} is not in {CONTRACT.name}: review what its asyncio changed in "
            "the pieces ferroloop reuses (diff them with the newest recorded version), "
            "fix ferroloop, then record it with `python tests/test_stdlib_contract.py --record`",
            pytrace=False,
        )
    expected, actual = recorded[VERSION], fingerprints()
    changed = sorted(k for k in expected.keys() & actual.keys() if expected[k] != actual[k])
    added = sorted(actual.keys() - expected.keys())
    removed = sorted(expected.keys() - actual.keys())
    assert not (changed or added or removed), (
        f"the stdlib code ferroloop reuses differs from what was reviewed for {VERSION}: "
        f"changed {changed}, new {added}, gone {removed}"
    )


def test_borrowed_functions_find_their_state():
    from ferroloop.loop import Loop

    loop = Loop()
    try:
        problems = []
        for name, fn in _borrowed_functions().items():
            if not name.startswith("Loop."):
                continue
            loads, stores, bare_super = _self_attributes(fn)
            missing = sorted(a for a in loads - stores if not hasattr(loop, a))
            if missing:
                problems.append(f"{name} reads missing loop attributes {missing}")
            if bare_super:
                problems.append(f"{name} calls super() (bound to a class Loop is not)")
        assert not problems, "\n".join(problems)
    finally:
        loop.close()


def test_borrowed_methods_do_not_shadow_ferroloop_own():
    """A name ferroloop defines itself is never replaced by a borrowed function."""
    from ferroloop import loop as loop_module

    own = {"_stop_serving", "sock_recv", "run_in_executor", "close", "run_forever"}
    for name in own:
        assert getattr(loop_module.Loop, name).__module__ == "ferroloop.loop", name


def _record() -> None:
    recorded = json.loads(CONTRACT.read_text()) if CONTRACT.exists() else {}
    recorded[VERSION] = fingerprints()
    CONTRACT.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(recorded[VERSION])} pieces for CPython {VERSION} in {CONTRACT}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        _record()
    else:
        print(__doc__)
