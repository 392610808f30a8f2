"""A simulated lease holder: grants a lease, attaches a key to it, keeps it alive, and checks that
the cluster never ends it earlier than it promised (docs/protocol.md, *Leases*).

It drives the real client core (`operations.lease_grant`, `lease_keepalive`, `put`) over the
simulated network. Each lease it holds is good until `start + ttl` for the latest grant or
keepalive answered, `start` being when that *call* began (earlier than the send of the attempt
that was answered: the promise checked is never more than the one made). A keepalive answered
NOT_FOUND says the lease was gone when that leader looked; if that was before the promise ran
out (less the nodes' clock drift), the lease expired early: a violation. Now and then the holder
stops keeping a lease alive for two TTLs, to see leases expire through the log too.

Its keys (`lh{n}/k`) are not the clients' keys, whose history the linearizability checker judges:
an expiry deletes them, a write no client made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from confctl.client import operations, replies
from confctl.client.call import Call, ClientCore, Done, Fail, Send
from confctl.client.errors import ConfmanError, NotFound
from confctl.client.routing import Backoff, Router
from confctl.client.session import Session
from confctl.client.shards import ShardDirectory
from confctl.client.types import LeaseResult
from tests.sim.world import World

SendFrame = Callable[[str, list[bytes], bytes], None]
TTL_MS: Final = 2_000
LAPSE_SHARE: Final = 0.1  # of keepalive rounds: stop for two TTLs instead
DRIFT_SLACK_S: Final = 0.05


class SimLeaseHolder:
    def __init__(self, world: World, number: int, *, endpoints: list[str], send: SendFrame) -> None:
        self.world = world
        self.number = number
        self.envelope = [b"holder-%d" % number]
        self.rng = world.scenario.rng(f"holder/{number}")
        self.core = ClientCore(
            Session(b"sim-holder-%d" % number),
            Router(tuple(endpoints)),
            timeout_s=3.0,
            attempt_timeout_s=1.0,
            backoff=Backoff(rng=world.scenario.rng(f"holder/{number}/backoff")),
            shards=ShardDirectory(discover=True),
        )
        self.namespace = f"lh{number}/"
        self._send = send
        self.running = True
        self.lease: int | None = None
        self.good_until = 0.0  # sim seconds: the cluster promised the lease at least until then
        self.problems: list[str] = []
        self._call: Call[Any] | None = None
        self._call_started = 0.0
        self._then: Callable[[Any], None] = lambda result: None
        # How far early a lease may end in simulated time: the leader's clock may run fast.
        rate = max(world.scenario.clock_rates)
        self._slack_s = TTL_MS / 1000 * max(0.0, 1 - 1 / rate) + DRIFT_SLACK_S

    # ------------------------------------------------------------------ the holder's life

    def start(self) -> None:
        self.world.at(self.world.now + self.rng.uniform(0.05, 0.5), self._grant)

    def _grant(self) -> None:
        if self.running:
            self._run(operations.lease_grant(self.namespace, TTL_MS), self._granted)

    def _granted(self, result: LeaseResult | ConfmanError) -> None:
        if isinstance(result, ConfmanError):
            self._later(0.2, self._grant)
            return
        self.lease = result.lease
        self.good_until = self._call_started + TTL_MS / 1000
        self.world.count("leases_granted")
        key = f"{self.namespace}k"
        self._run(operations.put(key, f"held-{result.lease}", result.lease), self._attached)

    def _attached(self, result: object) -> None:
        self._later(TTL_MS / 4000, self._keep_alive)

    def _keep_alive(self) -> None:
        if not self.running or self.lease is None:
            return
        if self.rng.random() < LAPSE_SHARE:
            self.world.count("leases_let_lapse")
            self._later(2 * TTL_MS / 1000, self._keep_alive_after_lapse)
            return
        self._run(operations.lease_keepalive(self.namespace, self.lease), self._kept)

    def _keep_alive_after_lapse(self) -> None:
        if self.running and self.lease is not None:
            self._run(operations.lease_keepalive(self.namespace, self.lease), self._kept)

    def _kept(self, result: LeaseResult | ConfmanError) -> None:
        if isinstance(result, LeaseResult):
            self.good_until = max(self.good_until, self._call_started + TTL_MS / 1000)
            self.world.count("lease_keepalives")
            self._later(TTL_MS / 4000, self._keep_alive)
            return
        if isinstance(result, NotFound):
            self._gone()
            return
        self._later(0.1, self._keep_alive)  # no answer: try again (the promise runs out meanwhile)

    def _gone(self) -> None:
        """A leader said the lease is gone. It may be only once the promise ran out."""
        now = self.world.now
        early = self.good_until - self._slack_s - now
        if early > 0:
            self.problems.append(
                f"holder {self.number}: lease {self.lease} ended {early:.3f} s before {self.good_until:.3f}, "
                "the end of the TTL its last answered keepalive or grant promised"
            )
        self.world.count("leases_expired_seen")
        self.lease = None
        self._later(0.1, self._grant)

    # ------------------------------------------------------------------ calls

    def _run(self, operation: tuple[Any, Callable[[Any], Any]], then: Callable[[Any], None]) -> None:
        request, parse = operation
        now = self.world.now
        self._call = self.core.call(request, parse, now)
        self._call_started = now
        self._then = then
        self._step(self._call.start(now))

    def _step(self, step: Send | Done[Any] | Fail) -> None:
        if isinstance(step, Send):
            call, rid = self._call, step.request_id
            send_at = self.world.now + step.delay_s
            self.world.at(send_at, lambda: self._send(step.endpoint, self.envelope, step.frame))
            self.world.at(send_at + step.wait_s, lambda: self._silence(call, rid))
            return
        self._call = None
        self._then(step.value if isinstance(step, Done) else step.error)

    def on_reply(self, frame: bytes) -> None:
        reply = replies.decode(frame)
        call = self._call
        if reply is None or call is None or reply.get("id") != call.request_id:
            return
        self._step(call.on_reply(reply, self.world.now))

    def _silence(self, call: Call[Any] | None, request_id: int) -> None:
        if call is None or call is not self._call or call.request_id != request_id:
            return
        self._step(call.on_silence(self.world.now))

    def _later(self, delay_s: float, action: Callable[[], None]) -> None:
        self.world.at(self.world.now + delay_s, action)
