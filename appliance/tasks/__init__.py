"""The task queue: the only package importing huey. Payloads carry job ids, never objects."""

from appliance.tasks.queue import JobQueue, JSONSerializer

__all__ = ["JSONSerializer", "JobQueue"]
