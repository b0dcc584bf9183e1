"""Validating tokens carried in messages, outside any web framework.

Two shapes, both using the same validation as the web adapters:
- ``asyncio_worker``: an asyncio consumer with one TokenValidator for its lifetime;
- ``ThreadPoolWorker``: a thread pool (Celery-style sync tasks) that keeps one SyncTokenValidator
  for its lifetime, shared by every thread and every batch.

    OAUTH_SHIELD_ISSUER=... OAUTH_SHIELD_AUDIENCE=... python examples/worker.py TOKEN...
"""

import asyncio
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from oauth_shield import AuthError, SyncTokenValidator, TokenValidator


async def asyncio_worker(queue: asyncio.Queue[dict[str, str]]) -> list[str]:
    """Consume messages ``{"token": ..., "task": ...}`` until a ``None`` task arrives."""
    done = []
    async with TokenValidator.from_env() as validator:
        while (message := await queue.get())["task"] != "stop":
            try:
                token = await validator.validate(message["token"], scopes=["write"])
            except AuthError as error:  # refused: drop the message, never log the token
                done.append(f"{message['task']}: refused ({error.error})")
                continue
            done.append(f"{message['task']}: run for {token.subject}")
    return done


class ThreadPoolWorker:
    """Sync tasks on a thread pool. One validator for the worker's whole life: every thread
    and every batch share its caches, so a batch costs no key-set fetch after the first."""

    def __init__(self, threads: int = 8) -> None:
        self.validator = SyncTokenValidator.from_env()
        self.pool = ThreadPoolExecutor(max_workers=threads)

    def run(self, messages: Iterable[dict[str, str]]) -> list[str]:
        return list(self.pool.map(self.handle, messages))

    def handle(self, message: dict[str, str]) -> str:
        try:
            token = self.validator.validate(message["token"], scopes=["write"])
        except AuthError as error:  # refused: drop the message, never log the token
            return f"{message['task']}: refused ({error.error})"
        return f"{message['task']}: run for {token.subject}"

    def close(self) -> None:
        self.pool.shutdown()
        self.validator.close()


if __name__ == "__main__":
    messages = [{"token": token, "task": f"task-{i}"} for i, token in enumerate(sys.argv[1:])]
    worker = ThreadPoolWorker()
    try:
        print("\n".join(worker.run(messages)))
    finally:
        worker.close()
