"""What an endpoint looks like, and a list of them without repeats: pure, and cheap to import.

confctl checks the endpoints it is given before it loads the client (confctl/settings.py), and
the router checks them again when a client is made (routing.py re-exports both from here).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# What a DEALER can connect to: tcp needs a host and a port; ipc and inproc a name.
_ENDPOINT = re.compile(r"tcp://[^\s/]+:[0-9]{1,5}|ipc://\S+|inproc://\S+")


def is_endpoint(address: str) -> bool:
    return _ENDPOINT.fullmatch(address) is not None


def unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
