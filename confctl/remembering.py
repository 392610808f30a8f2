"""The client confctl's commands use: a `Client` that starts where the last confctl got an answer.

It reads the endpoint cache (confctl/endpoint_cache.py) when made, so a node that is down at
the head of the list costs one call its wait, not every call; when closed it records the
endpoint that answered, if that changed. Imported only when a command needs the client (it
loads zmq); the library's `Client` itself reads and writes no files.
"""

from __future__ import annotations

from confctl import endpoint_cache
from confctl.client.sync import Client
from confctl.settings import ClientSettings


class RememberingClient(Client):
    def __init__(self, settings: ClientSettings) -> None:
        super().__init__(
            list(settings.endpoints),
            timeout_s=settings.timeout_s,
            principal=settings.principal,
            cache=settings.cache,
        )
        self._endpoints = settings.endpoints
        self._remembered = endpoint_cache.load(settings.endpoints)
        if self._remembered is not None:
            self.core.router.prefer(self._remembered)

    def close(self) -> None:
        answered = self.core.router.last_answered
        if answered is not None and answered != self._remembered:
            endpoint_cache.save(self._endpoints, answered)
            self._remembered = answered
        super().close()
