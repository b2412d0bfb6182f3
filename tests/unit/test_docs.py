"""The README and docs/ name only commands and variables that exist: every `video-pipelines` command line of a
code block parses as the CLI parses it, and every VIDEO_PIPELINES_ variable is one the package reads.

`mkdocs build --strict` (.ci/run) checks the links and anchors; this checks what a reader copies.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from video_pipelines.doors.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*```")
# `KEY=value` assignments and `export` before a command, as in `DAGSTER_HOME=... video-pipelines dev`.
PREFIX = re.compile(r"^(?:export\s+)?(?:[A-Z_]+=\S*\s+)*")
VARIABLE = re.compile(r"\bVIDEO_PIPELINES_[A-Z_]*[A-Z]\b")


def code_lines(page: Path) -> list[str]:
    """The lines of `page`'s fenced code blocks."""
    lines: list[str] = []
    inside = False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            inside = not inside
        elif inside:
            lines.append(line.strip())
    return lines


def commands(page: Path) -> list[str]:
    """Each `video-pipelines ...` command of `page`'s code blocks, without its comment (one per `&&` part)."""
    found: list[str] = []
    for line in code_lines(page):
        for part in line.split("&&"):
            command = PREFIX.sub("", part.split(" #")[0].strip())
            if command.startswith("video-pipelines "):
                found.append(command)
    return found


DOCUMENTED = [(page.relative_to(REPO).as_posix(), command) for page in PAGES for command in commands(page)]


def test_the_docs_show_commands() -> None:
    assert len(DOCUMENTED) >= 30, DOCUMENTED  # the extraction found them, so the test below checks something


@pytest.mark.parametrize(("page", "command"), DOCUMENTED)
def test_a_documented_command_parses(page: str, command: str) -> None:
    argv = shlex.split(command)[1:]
    try:
        args, passed_on = build_parser().parse_known_args(argv)
    except SystemExit:
        pytest.fail(f"{page}: `{command}` is not a command the CLI accepts")
    assert not passed_on or args.verb == "daemon", f"{page}: `{command}`: unknown arguments {passed_on}"


def test_every_documented_variable_is_read_by_the_package() -> None:
    source = "\n".join(path.read_text() for path in (REPO / "video_pipelines").rglob("*.py"))
    documented = {name for page in PAGES for name in VARIABLE.findall(page.read_text())}
    assert documented, "the docs name no VIDEO_PIPELINES_ variable"
    unknown = sorted(name for name in documented if name not in source)
    assert not unknown, f"the docs name variables the package never reads: {unknown}"


def test_the_readme_links_to_pages_that_exist() -> None:
    # mkdocs checks the links inside docs/; the README is outside it.
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (REPO / "README.md").read_text())
    assert targets, "the README links to no page"
    missing = [target for target in targets if not (REPO / target).exists()]
    assert not missing, f"the README links to files that do not exist: {missing}"
