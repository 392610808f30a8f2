"""Locks on leases against real processes: one holder at a time, and fencing tokens that keep a
holder who lost its lock (paused past its lease) from writing with its old token."""

from __future__ import annotations

import subprocess
import sys

from confctl.client import Client, NotFound, locks
from tests.integration.conftest import MakeCluster
from tests.integration.harness import wait_until

TTL_MS = 1_500


def test_a_holder_paused_past_its_lease_loses_the_lock_and_its_old_token_writes_nothing(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    cluster.wait_for_leader()
    endpoints = list(cluster.addresses().values())
    a, b = Client(endpoints, timeout_s=5.0), Client(endpoints, timeout_s=5.0)
    try:
        held_a = locks.acquire(a, "jobs/lock", "a", ttl_ms=TTL_MS)
        assert locks.fenced_put(a, "jobs/lock", held_a.token, "jobs/output", "from a")

        # A pauses: it keeps nothing alive. B waits for the lock, and gets it once A's lease ends.
        held_b = locks.acquire(b, "jobs/lock", "b", ttl_ms=TTL_MS, wait_s=20.0)
        late = locks.fenced_put(a, "jobs/lock", held_a.token, "jobs/output", "late a")
        fresh = locks.fenced_put(b, "jobs/lock", held_b.token, "jobs/output", "from b")
        output = a.get("jobs/output").value
        locks.release(b, held_b)
        try:
            a.get("jobs/lock")
            released = False
        except NotFound:
            released = True
    finally:
        a.close()
        b.close()

    assert held_b.token > held_a.token
    assert (late, fresh, output) == (False, True, b"from b")
    assert released


def test_confctl_lock_runs_the_command_with_the_token_and_gives_the_lock_up(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    cluster.wait_for_leader()
    endpoints = ",".join(cluster.addresses().values())
    show = "import os; print(os.environ['CONFMAN_LOCK_KEY'], os.environ['CONFMAN_LOCK_TOKEN'])"

    confctl = [sys.executable, "-m", "confctl", "-e", endpoints]
    command = [*confctl, "lock", "deploy", "--", sys.executable, "-c", show]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    after = subprocess.run(
        [*confctl, "get", "locks/deploy"], capture_output=True, text=True, timeout=30, check=False
    )

    assert ran.returncode == 0, ran.stderr
    key, token = ran.stdout.split()
    assert key == "locks/deploy"
    assert ":" in token
    assert after.returncode == 3  # released: the key went with the revoked lease


def test_confctl_lock_stops_the_command_and_exits_5_when_the_cluster_is_gone_for_the_ttl(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    cluster.wait_for_leader()
    endpoints = ",".join(cluster.addresses().values())
    confctl = [sys.executable, "-m", "confctl", "-e", endpoints, "--timeout", "1"]
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    command = [*confctl, "lock", "job", "--ttl-ms", "1500", "--", *sleeper]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def held() -> bool | None:
        got = subprocess.run([*confctl, "get", "locks/job"], capture_output=True, check=False)
        return got.returncode == 0 or None

    try:
        wait_until(held, 20.0, "the lock taken")
        for node_id in cluster.addresses():
            cluster.kill(node_id)
        _, err = holder.communicate(timeout=30)
    finally:
        holder.kill()

    assert holder.returncode == 5, err  # its lease may have ended: the command was stopped
    assert "lost the lock" in err
