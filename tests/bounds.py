"""The one bound of the test suite's waits.

Every wait in a test that should end — a join, an event, a reply, a task group — is bounded
by `WAIT`, so that a bug hangs no run: it fails the test that waited. `WAIT` is a bound,
never a timing assertion: nothing a test checks depends on how fast something happens, and
a correct run takes a small part of it even on a loaded machine. (The soaks, which load
every core at once, wait for a few times `WAIT`.)
"""

from __future__ import annotations

WAIT = 10.0
"""Seconds: the bound of every wait that should end."""
