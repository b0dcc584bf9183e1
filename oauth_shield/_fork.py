"""What a forked child must not share with its parent, renewed by one hook.

Theory of operation
-------------------
- ``fork()`` (gunicorn ``--preload``, Celery, multiprocessing) copies every object and every
  file descriptor, and keeps one thread: the one that forked. A lock another thread held stays
  held forever; event loops, their tasks and their sockets still belong to the parent.
- Every object holding such state registers here (:func:`register`). One
  ``os.register_at_fork(after_in_child=...)`` hook calls its ``_after_fork()`` in the child
  before anything else runs there: locks are made anew, loop-bound objects are dropped and
  re-created on first use.
- What the child drops is never closed, and never collected (:func:`keep`): closing a copied
  asyncio transport unregisters its socket from the epoll instance the parent still polls, and
  a TLS close would write into the parent's stream. So the parent's connections are not
  disturbed; their file descriptors stay open in the child (a socket the parent closes is
  released when the child exits). The cost is bounded by what was open at the fork.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger("oauth_shield.fork")


class Renewable(Protocol):
    def _after_fork(self) -> None: ...


_registered: weakref.WeakSet[Renewable] = weakref.WeakSet()
_module_hooks: list[Callable[[], None]] = []
_kept: list[object] = []


def register(renewable: Renewable) -> None:
    """Call ``renewable._after_fork()`` in every forked child, for as long as it lives."""
    _registered.add(renewable)


def on_fork(hook: Callable[[], None]) -> None:
    """Call ``hook()`` in every forked child (for module state), after the objects."""
    _module_hooks.append(hook)


def keep(dropped: object) -> None:
    """Hold on to something of the parent's for the child's whole life: never used, never
    closed, never collected (see the theory of operation)."""
    if dropped is not None:
        _kept.append(dropped)


def _after_fork_in_child() -> None:
    for hook in [*(renewable._after_fork for renewable in list(_registered)), *_module_hooks]:
        try:
            hook()
        except Exception:  # one broken object must not leave the others shared
            logger.exception("renewing state after fork failed")


os.register_at_fork(after_in_child=_after_fork_in_child)
