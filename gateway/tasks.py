"""Async synthesis tasks: started now, fetched later, kept for a bounded time and count.

A finished task's result (or error) is kept for `retention_s` after it finished. At most `max_tasks`
are held, running or finished: a new task drops the oldest finished ones to make room, and is refused
(429) when every place holds a running task. Expired and dropped ids answer 404 like unknown ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gateway.errors import ApiError

log = logging.getLogger("gateway.tasks")
Result = TypeVar("Result")


@dataclass
class Task(Generic[Result]):
    id: str
    job: asyncio.Task | None = None
    finished_at: float | None = None
    result: Result | None = None
    error: ApiError | None = None

    @property
    def running(self) -> bool:
        return self.finished_at is None


@dataclass
class TaskStore(Generic[Result]):
    retention_s: float
    max_tasks: int
    clock: Callable[[], float] = time.monotonic
    tasks: dict[str, Task[Result]] = field(default_factory=dict)  # in submission order

    def submit(self, work: Callable[[], Awaitable[Result]]) -> Task[Result]:
        self.prune()
        if len(self.tasks) >= self.max_tasks:
            finished = [t for t in self.tasks.values() if not t.running]
            if not finished:
                raise ApiError(429, f"{self.max_tasks} async tasks are already running: wait for one to finish, "
                                    "or use POST /api/tts", {"Retry-After": "5"})
            oldest = min(finished, key=lambda t: t.finished_at)
            del self.tasks[oldest.id]
        task: Task[Result] = Task(uuid.uuid4().hex)
        self.tasks[task.id] = task
        task.job = asyncio.create_task(self._run(task, work))
        return task

    def get(self, task_id: str) -> Task[Result] | None:
        self.prune()
        return self.tasks.get(task_id)

    def prune(self) -> None:
        """Drops the finished tasks older than the retention time."""
        now = self.clock()
        expired = [t.id for t in self.tasks.values() if not t.running and now - t.finished_at > self.retention_s]
        for task_id in expired:
            del self.tasks[task_id]

    async def close(self) -> None:
        jobs = [t.job for t in self.tasks.values() if t.running and t.job is not None]
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    async def _run(self, task: Task[Result], work: Callable[[], Awaitable[Result]]) -> None:
        try:
            task.result = await work()
        except ApiError as e:
            task.error = e
        except Exception:  # a bug of ours: the caller gets a 500 and the log the traceback
            log.exception("async task %s failed", task.id)
            task.error = ApiError(500, "the task failed inside the gateway; see the gateway log")
        finally:
            task.finished_at = self.clock()
