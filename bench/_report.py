"""Shared output for the benchmarks: human-readable lines, then (with --json) one JSON line.

Every key names its unit last (`committed_entries_per_s`, `rss_mib`, `wall_s`),
as bench/README.md asks, so runs can be compared by a script.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

Value = int | float | str | bool | None


def rss_bytes() -> int:
    """The process's resident set size now (VmRSS), in bytes."""
    return _proc_status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """The highest resident set size so far (VmHWM), in bytes."""
    return _proc_status_kib("VmHWM") * 1024


def _proc_status_kib(field: str) -> int:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    import resource  # noqa: PLC0415  (only where /proc is missing)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, a peak only


def machine() -> dict[str, Value]:
    """Where the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "cpu_model": cpu,
        "nproc": os.cpu_count(),
    }


def format_value(value: Value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if value < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def print_section(title: str, values: Mapping[str, Value]) -> None:
    """One titled block of `key  value` lines, keys aligned."""
    print(f"== {title}")
    width = max((len(key) for key in values), default=0)
    for key, value in values.items():
        print(f"  {key:<{width}}  {format_value(value)}")


def print_json(values: Mapping[str, Value]) -> None:
    """The one machine-readable line; it must be the last line printed."""
    print(json.dumps(dict(values), sort_keys=False), flush=True)
