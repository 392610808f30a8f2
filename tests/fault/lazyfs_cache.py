"""The page cache of the lazy filesystem: a file's writes stay in memory until it is fsynced.

`CachedFile` sits in front of one open backing file (the "disk"). Reads see
every write; the backing file changes only in `sync()`. Dropping the object
without `sync()` is what a power loss does to a real page cache: every byte
written since the last fsync is gone, and the file is back to its size and
content at that fsync.

Invariants:
- `clean_limit <= size`, and `clean_limit <=` the backing file's size: a
  byte below `clean_limit` that no dirty page covers is read from the
  backing file, a byte at or past it reads as zero (the file was truncated
  there, or extended past its durable end, since the last sync).
- A dirty page holds the whole page as readers see it (zeros past `size`);
  no dirty page starts at or past `size`.
- `sync()` makes the backing file equal, byte for byte, to what readers see,
  then forgets the dirty pages.

No locking here: the filesystem serialises calls with one lock.
"""

from __future__ import annotations

import os

PAGE_BYTES = 4096


class CachedFile:
    """One file's unsynced state over the backing file descriptor `fd` (owned by the caller)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        durable = os.fstat(fd).st_size
        self.size = durable
        self.clean_limit = durable
        self.dirty: dict[int, bytearray] = {}
        self.truncated = False  # a truncation below the durable size waits for sync

    @property
    def is_dirty(self) -> bool:
        return bool(self.dirty) or self.truncated or self.size != self.clean_limit

    @property
    def dirty_bytes(self) -> int:
        """Bytes of dirty pages: what a power loss would drop now (a pending truncation aside)."""
        return len(self.dirty) * PAGE_BYTES

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        out = bytearray()
        position = offset
        while position < end:
            page, within = divmod(position, PAGE_BYTES)
            take = min(PAGE_BYTES - within, end - position)
            buffer = self.dirty.get(page)
            if buffer is None:
                buffer = self._clean_page(page)
            out += buffer[within : within + take]
            position += take
        return bytes(out)

    def write(self, offset: int, data: bytes) -> int:
        position = offset
        view = memoryview(data)
        while view:
            page, within = divmod(position, PAGE_BYTES)
            take = min(PAGE_BYTES - within, len(view))
            buffer = self.dirty.get(page)
            if buffer is None:
                buffer = self.dirty[page] = self._clean_page(page)
            buffer[within : within + take] = view[:take]
            view = view[take:]
            position += take
        self.size = max(self.size, offset + len(data))
        return len(data)

    def truncate(self, length: int) -> None:
        if length < self.size:
            if length < self.clean_limit:
                self.clean_limit = length
                self.truncated = True
            last, within = divmod(length, PAGE_BYTES)
            for page in [p for p in self.dirty if p > last or (p == last and within == 0)]:
                del self.dirty[page]
            if within and last in self.dirty:
                self.dirty[last][within:] = bytes(PAGE_BYTES - within)
        self.size = length

    def sync(self) -> None:
        """Write what readers see to the backing file; afterwards nothing is dirty."""
        if self.truncated:
            # Cut first, so that bytes past the truncation point read back as zeros, not old data.
            os.ftruncate(self.fd, self.clean_limit)
        for page in sorted(self.dirty):
            start = page * PAGE_BYTES
            os.pwrite(self.fd, self.dirty[page][: self.size - start], start)
        os.ftruncate(self.fd, self.size)
        self.dirty.clear()
        self.clean_limit = self.size
        self.truncated = False

    def _clean_page(self, page: int) -> bytearray:
        """The page as the backing file has it below `clean_limit`, zeros elsewhere."""
        start = page * PAGE_BYTES
        count = max(0, min(PAGE_BYTES, self.clean_limit - start))
        data = os.pread(self.fd, count, start) if count else b""
        return bytearray(data) + bytearray(PAGE_BYTES - len(data))
