"""``chatq kb ingest`` and friends: files in, knowledge stored; bad files stop everything with a
clear message and store nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from chatq.cli import main
from chatq.knowledge_files import KnowledgeFileError, read_intents, read_knowledge
from shared.config import get_settings
from shared.db.engine import dispose_engine, session_scope
from shared.db.models import FaqEntry, KbDocument

EXAMPLE_SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHATQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CHATQ_DATABASE_URL", "")
    get_settings.cache_clear()
    yield tmp_path
    dispose_engine(get_settings().database_url)
    get_settings.cache_clear()


def rows(model: type) -> int:
    with session_scope(get_settings().database_url) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_markdown_becomes_a_document_titled_by_its_first_heading(tmp_path: Path) -> None:
    (tmp_path / "returns.zh.md").write_text("# 退货政策\n\n7天无理由退货。", encoding="utf-8")
    (tmp_path / "faq.csv").write_text(
        "id,question,answer,alternatives\nhours,When are you open?,9-21,Opening hours?|Open now?\n",
        encoding="utf-8",
    )
    knowledge = read_knowledge([tmp_path])
    assert knowledge.documents["returns.zh"].title == "退货政策"
    assert knowledge.faq["hours"].alternatives == ["Opening hours?", "Open now?"]


def test_plain_text_is_titled_by_its_first_line_when_it_reads_like_a_heading(
    tmp_path: Path,
) -> None:
    (tmp_path / "hours.txt").write_text("Opening Hours\n\nWe open at nine.", encoding="utf-8")
    (tmp_path / "note.txt").write_text("We open at nine.\n\nAnd close at five.", encoding="utf-8")
    knowledge = read_knowledge([tmp_path])
    assert knowledge.documents["hours"].title == "Opening Hours"
    assert knowledge.documents["note"].title == "note"


def test_the_bundled_shop_reads_cleanly() -> None:
    knowledge = read_knowledge([EXAMPLE_SHOP / "documents", EXAMPLE_SHOP / "faq.yaml"])
    assert len(knowledge.documents) >= 8 and len(knowledge.faq) >= 20
    intents = read_intents(EXAMPLE_SHOP / "intents.yaml")
    assert {"order_status"} <= {intent.name for intent in intents}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("faq.yaml", "- question: [unclosed\n", "not valid YAML"),
        ("faq.yaml", "- question: Where?\n", "answer"),
        ("faq.json", '{"question": "x"}', "expected a list"),
        ("faq.csv", "question\nWhere?\n", "CSV needs the columns"),
        ("bad name.md", "# Title\n\ntext", "valid id"),
        ("empty.md", "   \n", "must not be empty"),
    ],
)
def test_a_bad_file_stops_the_ingest_and_stores_nothing(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str,
    message: str,
) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "shipping.md").write_text("# Shipping\n\nShips in 2 days.", encoding="utf-8")
    (folder / name).write_text(content, encoding="utf-8")
    assert main(["keys", "create", "--name", "shop"]) == 0
    capsys.readouterr()
    assert main(["kb", "ingest", "--tenant", "shop", str(folder)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("chatq: ") and message in error and name in error
    assert len(error.strip().splitlines()) == 1
    assert rows(KbDocument) == 0 and rows(FaqEntry) == 0


def test_bad_intent_yaml_is_refused_with_the_intent_named(tmp_path: Path) -> None:
    path = tmp_path / "intents.yaml"
    path.write_text(
        "- name: hours\n  examples: ['open?']\n  handler: {type: template, answer: 9-21}\n"
        "- name: order\n  patterns: ['(unclosed']\n  handler: {type: template, answer: x}\n",
        encoding="utf-8",
    )
    with pytest.raises(KnowledgeFileError, match=r"intent 2.*not a valid regular expression"):
        read_intents(path)


def test_ingest_then_list_through_the_cli(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "--name", "shop"]) == 0
    assert main(["kb", "ingest", "--tenant", "shop", str(EXAMPLE_SHOP / "documents")]) == 0
    assert main(["kb", "ingest", "--tenant", "shop", str(EXAMPLE_SHOP / "faq.yaml")]) == 0
    assert main(["intents", "load", "--tenant", "shop", str(EXAMPLE_SHOP / "intents.yaml")]) == 0
    capsys.readouterr()
    assert main(["kb", "list", "--tenant", "shop"]) == 0
    listing = capsys.readouterr().out
    assert "returns.zh" in listing and "FAQ (" in listing
    assert main(["kb", "list", "--tenant", "nobody"]) == 1
    assert "no tenant named 'nobody'" in capsys.readouterr().err
