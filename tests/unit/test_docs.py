"""The docs a newcomer reads point at things that exist.

Every relative Markdown link in the README, `docs/`, `config/` and `systemd/`
names a file of the repository (and, with `#anchor`, a heading of that file);
and no page sends the reader to a design document that is not in the
repository: the architecture is docs/architecture.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "config").rglob("*.md"),
        *(ROOT / "systemd").glob("*.md"),
        *(ROOT / "tests").rglob("README.md"),
    ]
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+\s+(.*)$", re.MULTILINE)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_names_an_existing_file_and_heading(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path_part, _, fragment = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif fragment and fragment not in {anchor(h) for h in HEADING.findall(path.read_text())}:
            broken.append(f"{target}: no such heading in {path.relative_to(ROOT)}")

    assert not broken, broken


def test_the_architecture_page_is_linked_from_the_readme() -> None:
    assert "docs/architecture.md" in relative_links(ROOT / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_cites_a_design_document_outside_the_repository(page: Path) -> None:
    assert "DESIGN" not in page.read_text()
