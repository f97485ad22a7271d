"""What admission remembers between CONNECTs: the connect limit, the sign-failure limit
and the signs recently admitted. Plain values and monotonic times, no I/O.

Two limits, counted apart, so that guessing cannot lock the holder of a secret out:

- the connect limit counts only CONNECTs that proved the device's secret (a correct,
  fresh, unused sign): a device reconnecting in a loop is slowed, then blocked;
- the sign-failure limit counts wrong signs (and stale or replayed ones) per device
  *and source address*: past it, that address's CONNECTs for that device are refused
  unchecked until the block ends, right sign or wrong. A correct sign from any other
  address is never refused because of it. Per address, because a block that spared a
  correct sign from the guesser's own address would not slow guessing at all: the
  guesser would still learn at full speed which guess got in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from broker.clock import SYSTEM_CLOCK, Clock

DeviceKey = tuple[str, str]  # (product key, device key)
MAX_FAILURE_KEYS = 100_000  # (device, address) pairs remembered; the oldest go first
MAX_RECENT_SIGNS = 8  # signs remembered per device to tell a replay from a new CONNECT


@dataclass(frozen=True, slots=True)
class ConnectLimit:
    """A per-key limit: an attempt less than `interval` seconds after the previous one
    is refused; one more than `burst` within `window` seconds is refused and blocks
    the key for `block` seconds. `burst=0` turns the limit off.

    The defaults are EnOS's published connect limit (docs/protocol.md, section 8).
    """

    interval: float = 1.0
    burst: int = 4
    window: float = 120.0
    block: float = 300.0

    @classmethod
    def parse(cls, text: str, interval: float = 1.0) -> ConnectLimit:
        """`off`, or `BURST/WINDOW:BLOCK` in seconds, e.g. `4/120:300`."""
        if text.strip().lower() == "off":
            return cls(interval=0.0, burst=0)
        try:
            counts, _, block = text.partition(":")
            burst, _, window = counts.partition("/")
            limit = cls(burst=int(burst), window=float(window), block=float(block or 300))
        except ValueError:
            raise ValueError(
                f"{text!r} is not BURST/WINDOW:BLOCK, e.g. 4/120:300, or off"
            ) from None
        if limit.burst < 1 or limit.window <= 0 or limit.block < 0:
            raise ValueError(f"{text!r}: burst must be 1 or more and the window above 0")
        return replace(limit, interval=interval)

    @property
    def enabled(self) -> bool:
        return self.burst > 0


# Wrong signs: five per device and address within two minutes, then five minutes' wait.
SIGN_FAILURE_LIMIT = ConnectLimit(interval=0.0, burst=5, window=120.0, block=300.0)


@dataclass(frozen=True, slots=True)
class Wait:
    """An attempt refused by a limit: how long until the next may succeed."""

    seconds: float
    blocked: bool  # a block (not only "too soon after the last")
    started: bool = False  # this attempt started the block


class AttemptLimiter:
    """Recent attempts per key, and the keys blocked. At most `max_keys` keys are kept
    (the oldest are forgotten first), so a stranger cannot grow it without bound."""

    def __init__(self, limit: ConnectLimit, max_keys: int | None = None) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self._recent: dict[tuple[str, ...], list[float]] = {}
        self._blocked_until: dict[tuple[str, ...], float] = {}

    def check(self, key: tuple[str, ...], now: float) -> Wait | None:
        """The block on `key`, if any; nothing is counted."""
        until = self._blocked_until.get(key)
        if until is None:
            return None
        if now < until:
            return Wait(until - now, blocked=True)
        del self._blocked_until[key]
        return None

    def count(self, key: tuple[str, ...], now: float) -> Wait | None:
        """Count an attempt; a Wait if it is one too many (or too soon)."""
        limit = self.limit
        if not limit.enabled:
            return None
        # A short list per key (at most `burst` times): a deque costs ten times the memory.
        recent = [t for t in self._recent.pop(key, ()) if t > now - limit.window]
        too_soon = bool(recent) and now - recent[-1] < limit.interval
        recent.append(now)
        if len(recent) > limit.burst:
            self._bound(self._blocked_until)
            self._blocked_until[key] = now + limit.block
            return Wait(limit.block, blocked=True, started=True)
        self._bound(self._recent)
        self._recent[key] = recent
        if too_soon:
            return Wait(limit.interval - (now - recent[-2]), blocked=False)
        return None

    def allow(self, key: tuple[str, ...], now: float) -> Wait | None:
        """Check and count: a blocked key's attempts do not count (its end stays put)."""
        return self.check(key, now) or self.count(key, now)

    def _bound(self, table: dict[tuple[str, ...], Any]) -> None:
        if self.max_keys is not None and len(table) >= self.max_keys:
            del table[next(iter(table))]

    def keys_of(self, device: DeviceKey) -> Iterator[tuple[str, ...]]:
        """Every key that starts with the device's (product key, device key)."""
        for key in {*self._recent, *self._blocked_until}:
            if key[:2] == device:
                yield key

    def blocked_until(self, key: tuple[str, ...], now: float) -> float | None:
        until = self._blocked_until.get(key)
        return until if until is not None and until > now else None

    def recent(self, key: tuple[str, ...], now: float) -> int:
        return sum(1 for t in self._recent.get(key, ()) if t > now - self.limit.window)

    def forget(self, key: tuple[str, ...]) -> bool:
        """Forget a key's attempts and lift its block; whether it was blocked."""
        self._recent.pop(key, None)
        return self._blocked_until.pop(key, None) is not None


class SignLedger:
    """The last signs admitted per device, as hashes (a collision would only refuse).
    The same sign means the same timestamp: it is a replay, or an SDK resending the
    CONNECT it built once."""

    def __init__(self, keep: int = MAX_RECENT_SIGNS) -> None:
        self.keep = keep
        self._signs: dict[DeviceKey, list[int]] = {}

    def used(self, device: DeviceKey, sign: str) -> bool:
        return hash(sign.lower()) in self._signs.get(device, ())

    def record(self, device: DeviceKey, sign: str) -> None:
        signs = self._signs.setdefault(device, [])
        signs.append(hash(sign.lower()))
        del signs[: -self.keep]

    def forget(self, device: DeviceKey) -> None:
        self._signs.pop(device, None)


@dataclass(frozen=True, slots=True)
class Block:
    """A block on a device, as the API shows it."""

    reason: str  # "connect-limit" or "sign-failures"
    address: str | None  # the source address, for sign failures
    seconds_left: float


class ConnectGuard:
    """The limits and the ledger, with the settings `gatehouse serve` was given."""

    def __init__(
        self,
        connect_limit: ConnectLimit | None = None,
        failure_limit: ConnectLimit = SIGN_FAILURE_LIMIT,
        sign_max_age: float | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.clock = clock  # what the API reads blocks against; admission is given times
        self.connects = AttemptLimiter(connect_limit or ConnectLimit())
        self.failures = AttemptLimiter(failure_limit, MAX_FAILURE_KEYS)
        self.signs = SignLedger()
        self.sign_max_age = sign_max_age  # seconds; None: no window

    def blocks(self, device: DeviceKey, now: float) -> list[Block]:
        found: list[Block] = []
        until = self.connects.blocked_until(device, now)
        if until is not None:
            found.append(Block("connect-limit", None, until - now))
        for key in sorted(self.failures.keys_of(device)):
            until = self.failures.blocked_until(key, now)
            if until is not None:
                found.append(Block("sign-failures", key[2], until - now))
        return found

    def failures_of(self, device: DeviceKey, now: float) -> dict[str, int]:
        """Wrong signs in the current window, per source address."""
        counts = {key[2]: self.failures.recent(key, now) for key in self.failures.keys_of(device)}
        return {address: n for address, n in sorted(counts.items()) if n}

    def clear(self, device: DeviceKey) -> int:
        """Lift every block on the device and forget its counts; the blocks lifted."""
        lifted = int(self.connects.forget(device))
        for key in list(self.failures.keys_of(device)):
            lifted += self.failures.forget(key)
        return lifted

    def forget(self, device: DeviceKey) -> None:
        """A deleted device: nothing of it is kept for a new device with its key."""
        self.clear(device)
        self.signs.forget(device)
