"""The project documents itself: every verdict, reason and state named in the code is explained
in docs/, and no file points to a document that is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

from campaign.models import Case
from scanning.probes.base import EvidenceLevel, Reason, TransportStatus, Verdict

ROOT = Path(__file__).resolve().parents[1]
PROBES_DOC = (ROOT / "docs" / "probes.md").read_text()
ARCHITECTURE_DOC = (ROOT / "docs" / "architecture.md").read_text()


def test_it_explains_every_reason_code_in_the_probes_doc() -> None:
    missing = [r.value for r in Reason if f"`{r.value}`" not in PROBES_DOC]
    assert not missing, f"docs/probes.md does not explain {missing}"


def test_it_explains_every_verdict_evidence_level_and_transport_status() -> None:
    for vocabulary in (Verdict, EvidenceLevel, TransportStatus):
        missing = [v.value for v in vocabulary if f"`{v.value}`" not in PROBES_DOC]
        assert not missing, f"docs/probes.md does not explain {vocabulary.__name__} {missing}"


def test_it_explains_every_case_status_in_the_architecture_doc() -> None:
    missing = [s.value for s in Case.Status if f"`{s.value}`" not in ARCHITECTURE_DOC]
    assert not missing, f"docs/architecture.md does not explain case statuses {missing}"


def test_it_points_only_to_documents_in_the_repository() -> None:
    # Upper-case notes (NOTES.md), docs/… paths and Markdown links must resolve in the repository.
    mention = re.compile(
        r"(?<![\w/.-])((?:docs/)?[A-Z][A-Z_]+\.md|docs/[\w/-]+\.md)\b|\]\(([^)#]+\.md)"
    )
    sources = [
        *ROOT.glob("*.md"),
        *ROOT.glob("docs/**/*.md"),
        *(
            p
            for d in ("config", "campaign", "scanning", "letters", "bench", "tests", "templates")
            for p in (ROOT / d).rglob("*")
            if p.suffix in {".py", ".html", ".toml", ".md", ".txt"}
        ),
    ]
    dangling = []
    for path in sources:
        if ".venv" in path.parts or path == Path(__file__):
            continue
        found = mention.findall(path.read_text(errors="replace"))
        for name in {plain or linked for plain, linked in found}:
            candidates = [ROOT / name, path.parent / name, ROOT / "docs" / name]
            if not any(c.exists() for c in candidates):
                dangling.append(f"{path.relative_to(ROOT)}: {name}")
    assert not dangling, "points to documents outside the repository:\n" + "\n".join(dangling)
