"""The documentation stands alone and stays current.

- no tracked file points outside the repository to the sibling ``shared`` directory (the
  design notes the project was started from are not shipped; ``docs/`` replaces them);
- the settings table in docs/configuration.md is what scripts/settings-reference.py
  generates from the code now;
- every relative link in docs/*.md, README.md and examples/README.md points to a file
  that exists, and a link's ``#anchor`` (into another page or the same one) to a heading
  of that page, as GitHub renders headings into anchors.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "settings-reference.py"
CONFIGURATION = REPO / "docs" / "configuration.md"

#: The sibling directory as a path (written split here so this file does not match).
SHARED = ".." + "/shared/"
#: ``SHARED``, also as ``../../`` + ``shared/`` or with backslashes: a path out of the repository.
OUTSIDE = re.compile(r"\.\.[/\\]shared[/\\]")
#: Inline links and images ``[text](target)``; reference definitions ``[id]: target``.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^[ \t]{0,3}\[[^\]]+\]:[ \t]*<?(\S+?)>?(?:[ \t]|$)", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def tracked_files() -> list[Path]:
    """Files git tracks (the index, so also files added but not committed yet)."""
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, text=True
    ).stdout
    return [REPO / name for name in out.split("\0") if name and not name.startswith(".git/")]


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "examples/README.md"]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_reference", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def relative_links(text: str) -> list[tuple[int, str]]:
    """``(line, target)`` of every relative link outside code blocks and code spans."""
    # Blank out code but keep line numbers: a fenced block or `span` is not a link.
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    text = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), text)
    found = []
    for pattern in (INLINE_LINK, REFERENCE_LINK):
        for m in pattern.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
                continue  # a URL (https:, mailto:) or an anchor in the same page
            found.append((text.count("\n", 0, m.start()) + 1, target))
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lowercase, markup and punctuation dropped,
    spaces as ``-`` (``Session end and hand-back`` -> ``session-end-and-hand-back``)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a Markdown page (a repeated heading gets ``-1``, ``-2``...)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    found: set[str] = set()
    seen: dict[str, int] = {}
    for m in HEADING.finditer(text):
        base = slug(m.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_no_tracked_file_points_outside_the_repository_to_shared() -> None:
    offenders = []
    for path in tracked_files():
        if not path.is_file():
            continue  # deleted in the working tree, not yet in the index
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, (
        f"these lines point outside the repository to {SHARED}; the repository must stand "
        "alone - link to docs/ instead or say it in your own words:\n" + "\n".join(offenders)
    )


def test_the_settings_table_in_the_configuration_doc_is_current() -> None:
    script = load_script()
    documented = script.generated_part(CONFIGURATION.read_text(encoding="utf-8"))
    assert documented == script.table(), (
        "docs/configuration.md's settings table is stale; run "
        "`.venv/bin/python scripts/settings-reference.py --write`"
    )


def test_the_settings_table_lists_every_setting() -> None:
    from pymirror.settings import Settings

    table = load_script().table()
    assert "`PYMIRROR_SQS__DRAIN_TIMEOUT`" in table
    assert "`OPERATOR_SQS_SPLITTING_QUEUE_FORMAT`" in table
    assert "`OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT`" in table
    for name, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and hasattr(field.annotation, "model_fields"):
            for sub in field.annotation.model_fields:
                assert f"`PYMIRROR_{name.upper()}__{sub.upper()}`" in table


def test_the_settings_script_rewrites_only_the_generated_part(tmp_path: Path) -> None:
    script = load_script()
    doc = tmp_path / "configuration.md"
    doc.write_text(f"# before\n\n{script.BEGIN}\nold table\n{script.END}\n\nafter\n")
    assert script.main(["--check", "--doc", str(doc)]) == 1
    assert script.main(["--write", "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith(f"# before\n\n{script.BEGIN}\n| environment variable |")
    assert text.endswith(f"{script.END}\n\nafter\n")
    assert script.generated_part(text) == script.table()
    assert script.main(["--check", "--doc", str(doc)]) == 0


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_an_existing_file(doc: Path) -> None:
    broken = []
    for number, target in relative_links(doc.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (doc.parent / path).exists():
            broken.append(f"{doc.relative_to(REPO)}:{number}: {target}")
        elif not (doc.parent / path).resolve().is_relative_to(REPO):
            broken.append(f"{doc.relative_to(REPO)}:{number}: {target} (outside the repository)")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_anchor_of_a_link_names_a_heading_of_its_page(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    targets = [(n, t) for n, t in relative_links(text) if "#" in t]
    targets += [(n, t) for n, t in same_page_links(text)]
    broken = []
    for number, target in targets:
        path, _, anchor = target.partition("#")
        page = (doc.parent / path) if path else doc
        if page.suffix != ".md" or not page.is_file():
            continue  # a missing file is the test above's; other files have no headings
        if anchor not in anchors(page.read_text(encoding="utf-8")):
            broken.append(f"{doc.relative_to(REPO)}:{number}: {target}")
    assert not broken, "links to headings that do not exist:\n" + "\n".join(broken)


def same_page_links(text: str) -> list[tuple[int, str]]:
    """``(line, "#anchor")`` of every link to a heading of the same page, outside code."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    text = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), text)
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(1))
        for m in INLINE_LINK.finditer(text)
        if m.group(1).startswith("#")
    ]


def test_heading_anchors_are_made_as_github_makes_them() -> None:
    text = "# Session end and hand-back\n## `pymirror worker` and `--split`\n## Sessions\n"
    text += "## Sessions\n```\n# not a heading\n```\n### What exists today, and what is planned\n"
    assert anchors(text) == {
        "session-end-and-hand-back",
        "pymirror-worker-and---split",
        "sessions",
        "sessions-1",
        "what-exists-today-and-what-is-planned",
    }


def test_the_link_finder_sees_links_and_skips_code() -> None:
    text = "see [a](docs/a.md) and ![b](img.png#x)\n`[c](no.md)`\n```\n[d](no.md)\n```\n[e]: e.md\n"
    text += "[f](https://example.com) [g](#here)\n"
    assert relative_links(text) == [(1, "docs/a.md"), (1, "img.png#x"), (6, "e.md")]
