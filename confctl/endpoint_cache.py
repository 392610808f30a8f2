"""Which endpoint last answered confctl, per endpoint list, kept between processes.

Why: a client starts at the head of its endpoint list, and each confctl call is a new process,
so with the first node down every call spent an attempt's wait on it (about 1.6 s of the 5 s
default) before trying the next. The client already starts where the previous call of the same
process got an answer (confctl/client/routing.py); this carries that across processes.

One small JSON file per endpoint list (order aside) under `$XDG_CACHE_HOME/confman`, else
`~/.cache/confman`: `{"endpoints": [...], "answered": "tcp://..."}`. It is a hint only: a file
that is missing, unreadable, corrupt or names an endpoint not in the list is ignored, and one
that cannot be written is not written. It is replaced atomically (a temp file, then rename), so
two confctl calls at once leave one whole file or the other. Every endpoint list gets a file
(tests on random ports make many), so a save keeps only the `KEEP_FILES` most recently written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

CACHE_DIR_NAME = "confman"
KEEP_FILES = 64


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / CACHE_DIR_NAME


def cache_file(endpoints: Sequence[str], env: Mapping[str, str] | None = None) -> Path:
    """The file for this list: the same set of endpoints, in any order, shares one."""
    digest = hashlib.sha256("\n".join(sorted(set(endpoints))).encode("utf-8")).hexdigest()[:16]
    return cache_dir(env) / f"endpoints-{digest}.json"


def load(endpoints: Sequence[str], env: Mapping[str, str] | None = None) -> str | None:
    """The endpoint that last answered a confctl given this list, or None."""
    try:
        doc = json.loads(cache_file(endpoints, env).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or sorted(doc.get("endpoints") or []) != sorted(set(endpoints)):
        return None  # another list whose name collided, or a file not of ours
    answered = doc.get("answered")
    return answered if isinstance(answered, str) and answered in endpoints else None


def save(endpoints: Sequence[str], answered: str, env: Mapping[str, str] | None = None) -> None:
    """Record that `answered` answered; never fails the command (a hint is not worth an error)."""
    import tempfile  # noqa: PLC0415  (only when the answer changed; it loads shutil and random)

    path = cache_file(endpoints, env)
    doc = {"endpoints": sorted(set(endpoints)), "answered": answered}
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".endpoints-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        _prune(path.parent)
    except OSError:
        return


def _prune(directory: Path) -> None:
    """Remove all but the `KEEP_FILES` newest cache files (another process may remove them too)."""
    files = sorted(directory.glob("endpoints-*.json"), key=_mtime, reverse=True)
    for stale in files[KEEP_FILES:]:
        stale.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile: oldest of all
        return 0.0
