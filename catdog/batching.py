"""Batching: fixed-size slices for the offline loops (evaluate, predict, robustness, `predict()`), and dynamic
batching for the server, where photos that arrive together go through the network in one forward pass.

One forward of N small images costs far less than N forwards of one (the per-call overhead of torch or onnxruntime
and the weight reads are paid once), so under load the server answers more requests a second at a lower latency.
Bounded both ways: a batch holds at most `max_batch` photos, and a photo waits at most `max_wait_ms` for others,
and only while other requests are still being decoded; a lone request goes through at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from catdog.errors import CatdogError


def batches(n: int, size: int) -> Iterator[slice]:
    """The slices that cut `n` items into batches of `size` (the last one shorter)."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def check_batching(max_batch: int, max_wait_ms: float) -> None:
    if not isinstance(max_batch, int) or max_batch < 1:
        raise CatdogError(f"batch_max={max_batch}: must be a positive number of photos (1 = no batching).")
    if not 0 <= float(max_wait_ms) <= 1000:
        raise CatdogError(f"batch_wait_ms={max_wait_ms}: must be between 0 and 1000 milliseconds.")


class Batcher:
    """Collects preprocessed images (H, W, C) from concurrent requests and runs `forward` (N, H, W, C) -> (N, K)
    on each batch in one worker thread, off the event loop. Use inside a running loop: `start()`, then
    `async with batcher.decoding(): image = ...` and `await batcher.submit(image)` per request, `stop()` at the end.
    """

    def __init__(
        self, forward: Callable[[np.ndarray], np.ndarray], max_batch: int = 32, max_wait_ms: float = 5
    ):
        check_batching(max_batch, max_wait_ms)
        self.forward, self.max_batch, self.max_wait = forward, max_batch, float(max_wait_ms) / 1000
        self.pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self.in_decode = 0  # requests accepted whose image is still being decoded: worth waiting for
        self.changed: asyncio.Event  # made by start(), inside the loop that waits on it
        self.task: asyncio.Task | None = None
        # one forward at a time: torch and onnxruntime already spread one pass over every core
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="catdog-forward")
        self.batches = 0

    def start(self) -> None:
        self.changed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(), name="catdog-batcher")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for _, future in self.pending:
            future.cancel()
        self.executor.shutdown(wait=True)

    @contextlib.asynccontextmanager
    async def decoding(self):
        """Around a request's decode: while it runs, a batch being formed waits (up to max_wait_ms) for it."""
        self.in_decode += 1
        try:
            yield
        finally:
            self.in_decode -= 1
            self.changed.set()

    async def submit(self, image: np.ndarray) -> np.ndarray:
        """The forward's output row for one preprocessed image, computed in the next batch."""
        future = asyncio.get_running_loop().create_future()
        self.pending.append((image, future))
        self.changed.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.changed.wait()
            self.changed.clear()
            if not self.pending:
                continue
            deadline = loop.time() + self.max_wait
            while len(self.pending) < self.max_batch and self.in_decode and loop.time() < deadline:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), deadline - loop.time())
                self.changed.clear()
            batch = [(i, f) for i, f in self.pending[: self.max_batch] if not f.done()]  # done: cancelled
            del self.pending[: self.max_batch]
            if self.pending:
                self.changed.set()  # more than one batch waiting: the next goes at once
            if batch:
                await self._forward(batch)

    async def _forward(self, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        images = np.stack([image for image, _ in batch])
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self.executor, self.forward, images)
        except Exception as e:  # a failed forward fails its requests, not the server
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        self.batches += 1
        for (_, future), row in zip(batch, outputs, strict=True):
            if not future.done():
                future.set_result(row)
