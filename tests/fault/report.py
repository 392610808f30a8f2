"""The report of a fault run: report.md, history.jsonl and timeline.png in one folder.

The timeline draws one row per client: each op a short bar from its call to its return (to the
end of the run for an unknown op), green when ok, grey when failed, orange when unknown; fault
windows are shaded and named, so a reader sees at a glance what each fault cost. It needs
matplotlib (the `report` extra); without it the picture is skipped and the report says so.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.fault.linearizability import explain
from tests.fault.power_report import power_markdown
from tests.fault.runner import RunResult
from tests.fault.workloads import OP_TIMEOUT_S

COLOURS = {"ok": "#2e7d32", "fail": "#9e9e9e", "unknown": "#ef6c00"}
UNKNOWN_DRAWN_NS = int(OP_TIMEOUT_S * 1e9)


def write_report(result: RunResult, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    history_path = folder / "history.jsonl"
    result.history.save(history_path)
    written = [history_path]
    picture = folder / "timeline.png"
    picture_note = draw_timeline(result, picture)
    if picture_note is None:
        written.append(picture)
    report = folder / "report.md"
    report.write_text(render_markdown(result, picture_note))
    written.insert(0, report)
    return written


def render_markdown(result: RunResult, picture_note: str | None) -> str:
    ops = list(result.history)
    lines = [
        f"# Fault run, seed {result.settings.seed}: {'no violation' if result.ok else result.verdict}",
        "",
        f"- replay: `{result.settings.replay}`",
        f"- schedule: `{result.schedule_line}`",
        f"- {len(ops)} ops: {sum(o.outcome == 'ok' for o in ops)} ok, "
        f"{sum(o.outcome == 'fail' for o in ops)} failed, {sum(o.outcome == 'unknown' for o in ops)} unknown",
        "",
        "## Verdicts",
        "",
        "```",
        explain(result.linearizability),
        "```",
        "",
        *(["Other checks: no problem."] if not result.problems else [f"- {p}" for p in result.problems]),
        "",
        *_exits_section(result),
        "## Per fault",
        "",
        "| fault | at s | lasts s | writes tried | acknowledged | availability | heal to first write s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in result.stats:
        first = "-" if s.heal_to_first_write_s is None else f"{s.heal_to_first_write_s:.3f}"
        at_s, lasts_s = (s.start_ns - result.started_ns) / 1e9, (s.end_ns - s.start_ns) / 1e9
        lines.append(
            f"| {s.name} | {at_s:.2f} | {lasts_s:.2f} | {s.attempted} | {s.succeeded} "
            f"| {s.availability:.0%} | {first} |"
        )
    lines += power_markdown(result.windows)
    lines += ["", "## Timeline", ""]
    lines.append(picture_note or "![timeline](timeline.png)")
    return "\n".join(lines) + "\n"


def _exits_section(result: RunResult) -> list[str]:
    """Nodes that exited by themselves: each one's exit, when it was noticed, its last log lines."""
    if not result.exits:
        return ["Unplanned node exits: none.", ""]
    lines = ["## Unplanned node exits", ""]
    for unplanned in result.exits:
        at_s = (unplanned.noticed_ns - result.started_ns) / 1e9
        lines += [f"Noticed at {at_s:.2f} s:", "", "```", unplanned.describe(), "```", ""]
    return lines


def draw_timeline(result: RunResult, path: Path) -> str | None:
    """Draw the PNG; returns None when drawn, else why not."""
    if importlib.util.find_spec("matplotlib") is None:
        return "No timeline: matplotlib is not installed (`pip install -e '.[report]'`)."
    import matplotlib  # noqa: PLC0415 - optional, and only for the picture

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    t0, end = result.started_ns, result.ended_ns
    figure, axes = plt.subplots(figsize=(14, 6))
    processes = sorted({op.process for op in result.history})
    row = {p: i for i, p in enumerate(processes)}
    for op in result.history:
        # An unknown op never returned: draw it as long as its client waited before giving up.
        stop = op.return_ns if op.return_ns is not None else min(end, op.call_ns + UNKNOWN_DRAWN_NS)
        axes.plot(
            [(op.call_ns - t0) / 1e9, (stop - t0) / 1e9],
            [row[op.process], row[op.process]],
            color=COLOURS[op.outcome],
            linewidth=4 if op.outcome != "ok" else 2,
            solid_capstyle="butt",
        )
    for window in result.windows:
        start_s, end_s = (window.start_ns - t0) / 1e9, (window.end_ns - t0) / 1e9
        axes.axvspan(start_s, end_s, color="#e53935", alpha=0.12)
        axes.text(start_s, -0.9, window.name, fontsize=8, rotation=15, va="top")
    axes.set_yticks(range(len(processes)), [f"client {p}" for p in processes])
    axes.set_ylim(-1.6, len(processes) - 0.4)
    axes.set_xlabel("seconds since the clients started")
    axes.set_title(
        f"seed {result.settings.seed}: ops per client (green ok, grey failed, orange unknown); faults shaded"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None
