"""README is the Space's card (short) and docs/ holds the rest: every relative link in them points at a file that
exists, and README's test command is the one CI runs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"(?s)```.*?```", "", page.read_text())  # links inside code blocks are code, not links
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t) and not t.startswith("#")]


def test_every_relative_link_points_at_a_file():
    broken = []
    for page in PAGES:
        for target in relative_links(page):
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_links_every_docs_page_and_stays_short():
    readme = ROOT / "README.md"
    linked = {(ROOT / t).resolve() for t in relative_links(readme)}
    assert {p.resolve() for p in PAGES[1:]} <= linked
    assert len(readme.read_text().splitlines()) <= 150


def test_no_table_is_cut_off():
    """A markdown table's header is followed by its separator and at least one row (one table was once cut off
    after its header)."""
    for page in PAGES:
        lines = re.sub(r"(?s)```.*?```", "", page.read_text()).splitlines()
        for i, line in enumerate(lines):
            if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):  # a table's first line
                assert i + 2 < len(lines) and re.match(r"^\|[-|: ]+\|$", lines[i + 1]) \
                    and lines[i + 2].startswith("|"), f"{page.name}: table at line {i + 1} has no rows"  # fmt: skip


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci
    readme = (ROOT / "README.md").read_text()
    command = readme.split("<!-- test-command -->")[1].split("```")[1].removeprefix("bash\n").strip()
    extracted = subprocess.run(
        ["awk", r"/<!-- test-command -->/{found=1; next} found && /^```/{if (started) exit; started=1; next} started{print; exit}",
         str(ROOT / "README.md")], capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert extracted == command and command.endswith("python -m pytest")
    assert readme.count("```bash\napt-get update") == 2  # exactly two set-up commands
