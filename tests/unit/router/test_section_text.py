import uuid

from services.worker.router.tenant_knowledge import ChunkRecord, TenantKnowledge
from shared.knowledge.schemas import TenantSettings


def chunk(document: str, heading: str, text: str) -> ChunkRecord:
    return ChunkRecord(document, document.title(), heading, text, "en")


def test_a_chunk_answers_with_its_whole_section_and_nothing_beyond_it() -> None:
    knowledge = TenantKnowledge(uuid.uuid4(), "shop", 1, TenantSettings())
    knowledge.chunks = [
        chunk("warranty", "Warranty > Periods", "Routers: 2 years."),
        chunk("warranty", "Warranty > Repairs", "Call us first."),
        chunk("warranty", "Warranty > Repairs", "SF Express picks it up."),
        chunk("warranty", "Warranty > Repairs", "Repairs take 7 days."),
        chunk("shipping", "Warranty > Repairs", "Same heading, another document."),
    ]
    expected = "Call us first.\n\nSF Express picks it up.\n\nRepairs take 7 days."
    assert [knowledge.section_text(position) for position in (1, 2, 3)] == [expected] * 3
    assert knowledge.section_text(0) == "Routers: 2 years."
    assert knowledge.section_text(4) == "Same heading, another document."
