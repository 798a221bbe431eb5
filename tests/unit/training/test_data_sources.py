"""Reading training data: the seed, chat and CSV shapes, knowledge-base FAQ files, and rows that
are not examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data.sources import read_source, strip_speaker


def _jsonl(path: Path, *rows: object) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("用户：如何重置路由器？", "如何重置路由器？"),
        ("客服:请按住RESET键5秒。", "请按住RESET键5秒。"),
        ("User: How do I reset it?", "How do I reset it?"),
        ("agent：Hold the button.", "Hold the button."),
        ("Customer : my order?", "my order?"),
        ("ASSISTANT: Sure.", "Sure."),
        ("Username: where do I type it?", "Username: where do I type it?"),
        ("How do I reset it? User: me", "How do I reset it? User: me"),
    ],
)
def test_speaker_labels_are_removed_only_at_the_start(text: str, expected: str) -> None:
    assert strip_speaker(text) == expected


def test_seed_rows_become_chats_without_speaker_labels_and_with_the_language_detected(
    tmp_path: Path,
) -> None:
    source = _jsonl(
        tmp_path / "seed.jsonl",
        {"input": "用户：如何重置路由器？", "output": "客服：请按住路由器背面RESET键5秒。"},
        {"input": "User: How do I reset my router?", "output": "Agent: Hold RESET for 5 seconds."},
    )
    result = read_source(source)

    assert result.rejected == []
    assert result.lines == [1, 2]
    zh, en = result.examples
    assert [(m.role, m.content) for m in zh.messages] == [
        ("user", "如何重置路由器？"),
        ("assistant", "请按住路由器背面RESET键5秒。"),
    ]
    assert (zh.lang, en.lang) == ("zh", "en")
    assert en.answer == "Hold RESET for 5 seconds."
    assert zh.origin == "seed"


def test_seed_rows_keep_a_given_language_and_facts(tmp_path: Path) -> None:
    source = _jsonl(
        tmp_path / "seed.jsonl",
        {"input": "Refund?", "output": "Within 7 days.", "lang": "EN-us", "facts": ["7 days"]},
        {"input": "退货？", "output": "7天内。", "lang": "zh-CN", "facts": "7天|退货"},
    )
    en, zh = read_source(source).examples
    assert (en.lang, en.facts) == ("en", ["7 days"])
    assert (zh.lang, zh.facts) == ("zh", ["7天", "退货"])


def test_alpaca_rows_read_the_instruction_and_its_input_as_one_question(tmp_path: Path) -> None:
    source = _jsonl(
        tmp_path / "alpaca.json",
        {
            "instruction": "Answer the customer.",
            "input": "Is shipping free?",
            "output": "Over ¥99.",
        },
    )
    (example,) = read_source(source).examples
    assert example.prompt == [
        {"role": "user", "content": "Answer the customer.\n\nIs shipping free?"}
    ]


def test_chat_rows_keep_their_turns_language_facts_and_origin(tmp_path: Path) -> None:
    messages = [
        {"role": "system", "content": "You are Lumen Home's assistant."},
        {"role": "user", "content": "How long does delivery take?"},
        {"role": "assistant", "content": "2–4 days."},
        {"role": "user", "content": "And to Tibet?"},
        {"role": "assistant", "content": "5–8 days, ¥25 per order."},
    ]
    source = _jsonl(
        tmp_path / "chat.jsonl",
        {"messages": messages, "facts": ["5–8 days"], "origin": "feedback"},
    )
    (example,) = read_source(source).examples
    assert [m.model_dump() for m in example.messages] == messages
    assert (example.lang, example.facts, example.origin) == ("en", ["5–8 days"], "feedback")


def test_a_json_array_file_is_read_item_by_item(tmp_path: Path) -> None:
    source = tmp_path / "rows.json"
    source.write_text(
        json.dumps([{"question": "Is shipping free?", "answer": "Over ¥99."}, ["not", "a row"]]),
        encoding="utf-8",
    )
    result = read_source(source)
    assert [example.answer for example in result.examples] == ["Over ¥99."]
    assert [(row.line, row.reason) for row in result.rejected] == [
        (2, "not a JSON object but list")
    ]


def test_csv_rows_with_optional_language_and_facts(tmp_path: Path) -> None:
    source = tmp_path / "faq.csv"
    source.write_text(
        "\ufeffQuestion,Answer,lang,facts\n"
        '"How much is shipping, roughly?",¥10; free from ¥99.,,¥10|¥99\n'
        "运费多少？,每单10元，满99元免运费。,zh,\n",
        encoding="utf-8",
    )
    result = read_source(source)
    assert result.rejected == []
    en, zh = result.examples
    assert en.prompt[0]["content"] == "How much is shipping, roughly?"
    assert (en.lang, en.facts) == ("en", ["¥10", "¥99"])
    assert (zh.lang, zh.facts) == ("zh", [])
    assert result.lines == [2, 3]


def test_malformed_json_rows_are_rejected_with_their_line_and_reason(tmp_path: Path) -> None:
    source = _jsonl(
        tmp_path / "mixed.jsonl",
        {"input": "Is shipping free?", "output": "From ¥99."},
        "{not json",
        "[1, 2]",
        {"prompt": "Hi", "completion": "Hello"},
        {"input": "Where is my refund?"},
        {"input": "Refund?", "output": "3–5 working days.", "lang": "fr"},
        {"input": "Refund?", "output": "3–5 working days.", "facts": [3]},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello?"}]},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "robot", "content": "Hi"}]},
        {"messages": "hello"},
        {"input": 42, "output": "Yes."},
        "",
        {"input": "Can I pay by card?", "output": "Visa and Mastercard."},
    )
    result = read_source(source)

    assert [example.answer for example in result.examples] == ["From ¥99.", "Visa and Mastercard."]
    assert result.lines == [1, 13]
    reasons = {row.line: row.reason for row in result.rejected}
    assert reasons[2].startswith("not JSON")
    assert reasons[3] == "not a JSON object but list"
    assert reasons[4].startswith("unknown shape") and "prompt" in reasons[4]
    assert reasons[5].startswith("unknown shape")  # no output: neither seed nor chat
    assert reasons[6] == "lang 'fr' is not supported (en or zh)"
    assert reasons[7].startswith("facts must be")
    assert "last message must be the assistant" in reasons[8]
    assert "role" in reasons[9]
    assert reasons[10].startswith("messages must be a list")
    assert reasons[11] == "input must be text, not int"
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert result.rows_read == 12
    assert all(row.raw for row in result.rejected)


def test_csv_rows_with_too_few_or_too_many_values_are_rejected(tmp_path: Path) -> None:
    source = tmp_path / "faq.csv"
    source.write_text(
        "question,answer\nIs shipping free?,From ¥99.\nOnly a question\nA?,B.,C\n",
        encoding="utf-8",
    )
    result = read_source(source)
    assert len(result.examples) == 1
    assert [(row.line, row.reason) for row in result.rejected] == [
        (3, "fewer values than columns"),
        (4, "more values than columns"),
    ]


def test_a_file_in_no_accepted_format_is_an_error(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("Q: shipping?\nA: free\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"unknown format \.txt"):
        read_source(text_file)

    csv_without_columns = tmp_path / "faq.csv"
    csv_without_columns.write_text("q,a\nShipping?,Free\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"question and answer columns \(optional: lang, facts\); found: q, a"
    ):
        read_source(csv_without_columns)

    not_json = tmp_path / "rows.jsonl"
    not_json.write_text("question,answer\nShipping?,Free\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no line is JSON"):
        read_source(not_json)

    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes('{"input": "café?", "output": "oui"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        read_source(latin1)


def test_a_missing_file_is_not_found_and_a_folder_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_source(tmp_path / "missing.jsonl")
    folder = tmp_path / "rows.jsonl"
    folder.mkdir()
    with pytest.raises(ValueError, match="not a file"):
        read_source(folder)


def test_a_knowledge_base_faq_file_gives_one_example_per_wording(tmp_path: Path) -> None:
    faq = tmp_path / "faq.yaml"
    faq.write_text(
        "- id: refund-en\n"
        "  question: What is your refund policy?\n"
        '  alternatives: ["Can I return an item?", "How do returns work?"]\n'
        "  answer: You can return any item within 7 days of delivery.\n"
        "- question: 如何重置路由器？\n"
        "  answer: 按住路由器背面的RESET键5秒。\n",
        encoding="utf-8",
    )
    read = read_source(faq)
    assert read.rejected == []
    assert [(e.messages[0].content, e.lang) for e in read.examples] == [
        ("What is your refund policy?", "en"),
        ("Can I return an item?", "en"),
        ("How do returns work?", "en"),
        ("如何重置路由器？", "zh"),
    ]
    assert {e.messages[1].content for e in read.examples[:3]} == {
        "You can return any item within 7 days of delivery."
    }
    assert read.examples[0].origin == "faq:refund-en"
    assert read.lines == [1, 1, 1, 2]


def test_a_faq_file_the_knowledge_base_would_refuse_is_refused(tmp_path: Path) -> None:
    faq = tmp_path / "faq.yml"
    faq.write_text("- question: Where is my order?\n", encoding="utf-8")
    with pytest.raises(ValueError, match="answer"):
        read_source(faq)
