"""A real `gatehouse serve` in a subprocess on free loopback ports, for integration tests.

The launcher lives in `simulators.launch`, which the benchmarks share; the names are
re-exported here for the tests that import them from `tests.server`.
"""

from __future__ import annotations

from simulators.launch import API, Api, Gatehouse, Reply, free_port

__all__ = ["API", "Api", "Gatehouse", "Reply", "free_port"]
