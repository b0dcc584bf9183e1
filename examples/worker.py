"""Validating tokens carried in messages, outside any web framework.

Two shapes, both using the same validation as the web adapters:
- ``asyncio_worker``: an asyncio consumer with one TokenValidator for its lifetime;
- ``thread_pool_worker``: a thread pool (Celery-style sync tasks) sharing one SyncTokenValidator.

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


def thread_pool_worker(messages: Iterable[dict[str, str]]) -> list[str]:
    """Run sync tasks on a pool; every thread shares one validator and its caches."""
    with SyncTokenValidator.from_env() as validator:

        def handle(message: dict[str, str]) -> str:
            try:
                token = validator.validate(message["token"], scopes=["write"])
            except AuthError as error:
                return f"{message['task']}: refused ({error.error})"
            return f"{message['task']}: run for {token.subject}"

        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(handle, messages))


if __name__ == "__main__":
    messages = [{"token": token, "task": f"task-{i}"} for i, token in enumerate(sys.argv[1:])]
    print("\n".join(thread_pool_worker(messages)))
