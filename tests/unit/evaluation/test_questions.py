"""The eval file: what loads, and what is refused with the file, the question and the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatq.evaluation.questions import EvalFileError, QuestionKind, load_question_set

REPO_ROOT = Path(__file__).resolve().parents[3]


def question(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "faq-refund-en-1",
        "kind": "faq",
        "lang": "en",
        "question": "Can I send back a kettle?",
        "expect": {"all": [["7[- ]?days?", "seven days"], ["packag"]], "none": ["30[- ]days"]},
        **overrides,
    }


def write_set(tmp_path: Path, *questions: dict[str, Any], name: str = "shop") -> Path:
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump({"name": name, "questions": list(questions)}))
    return path


def test_a_valid_file_loads_with_compiled_case_insensitive_patterns(tmp_path: Path) -> None:
    loaded = load_question_set(write_set(tmp_path, question()))

    assert loaded.name == "shop"
    (only,) = loaded.questions
    assert only.kind is QuestionKind.FAQ
    assert [len(group) for group in only.expect.required_groups] == [2, 1]
    assert only.expect.required_groups[1][0].search("PACKAGING")


def test_json_files_load_like_yaml(tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"name": "shop", "questions": [question()]}))

    assert load_question_set(path).questions[0].id == "faq-refund-en-1"


def test_a_single_string_is_a_group_of_one_alternative(tmp_path: Path) -> None:
    path = write_set(tmp_path, question(expect={"all": ["refund", ["7 days", "seven days"]]}))

    assert load_question_set(path).questions[0].expect.all_of == [
        ["refund"],
        ["7 days", "seven days"],
    ]


def test_a_bad_regex_is_reported_with_the_file_and_question_id(tmp_path: Path) -> None:
    path = write_set(tmp_path, question(id="broken-1", expect={"all": [["(unclosed"]]}))

    with pytest.raises(EvalFileError) as raised:
        load_question_set(path)

    message = str(raised.value)
    assert str(path) in message
    assert "'broken-1'" in message
    assert "bad regex '(unclosed'" in message


def test_a_bad_forbidden_regex_is_reported_too(tmp_path: Path) -> None:
    path = write_set(tmp_path, question(id="q1", expect={"all": [["ok"]], "none": ["[z-a]"]}))

    with pytest.raises(EvalFileError, match=r"'q1'.*bad regex '\[z-a\]'"):
        load_question_set(path)


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = write_set(tmp_path, question(id="same"), question(id="same"))

    with pytest.raises(EvalFileError, match="question 'same': duplicate id"):
        load_question_set(path)


def test_an_unknown_kind_names_the_question_and_the_field(tmp_path: Path) -> None:
    path = write_set(tmp_path, question(id="odd-1", kind="trivia"))

    with pytest.raises(EvalFileError, match=r"'odd-1': kind: Input should be 'faq'"):
        load_question_set(path)


def test_unknown_fields_are_refused(tmp_path: Path) -> None:
    path = write_set(tmp_path, question(id="q1", expect={"all": [["x"]], "maybe": ["y"]}))

    with pytest.raises(EvalFileError, match=r"'q1': expect\.maybe: Extra inputs"):
        load_question_set(path)


def test_expect_all_may_be_empty_only_with_a_reference(tmp_path: Path) -> None:
    refused = write_set(tmp_path, question(id="q1", expect={"none": ["x"]}))
    with pytest.raises(EvalFileError, match=r"'q1'.*at least one group unless a reference"):
        load_question_set(refused)

    allowed = write_set(tmp_path, question(id="q2", expect={"reference": "We cannot say."}))
    assert load_question_set(allowed).questions[0].expect.reference == "We cannot say."


def test_an_empty_group_and_a_blank_pattern_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EvalFileError, match="group 1 is empty"):
        load_question_set(write_set(tmp_path, question(expect={"all": [[]]})))
    with pytest.raises(EvalFileError, match="must not be blank"):
        load_question_set(write_set(tmp_path, question(expect={"all": [["  "]]})))


def test_a_multiturn_question_needs_its_earlier_turns(tmp_path: Path) -> None:
    path = write_set(tmp_path, question(id="mt-1", kind="multiturn"))

    with pytest.raises(EvalFileError, match=r"'mt-1'.*needs earlier turns"):
        load_question_set(path)


def test_a_question_without_an_id_is_named_by_its_position(tmp_path: Path) -> None:
    nameless = question()
    del nameless["id"]

    with pytest.raises(EvalFileError, match="question 2: id: Field required"):
        load_question_set(write_set(tmp_path, question(), nameless))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("- just\n- a list\n", "expected a mapping"),
        ("name: shop\nquestions: []\n", "must be a non-empty list"),
        ("name: shop\nquestions: [\n", "not valid YAML"),
    ],
)
def test_files_of_the_wrong_shape_are_refused(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "eval.yaml"
    path.write_text(content)

    with pytest.raises(EvalFileError, match=reason):
        load_question_set(path)


def test_a_set_name_that_cannot_name_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EvalFileError, match="name"):
        load_question_set(write_set(tmp_path, question(), name="../shop"))


def test_a_missing_file_is_an_eval_file_error(tmp_path: Path) -> None:
    with pytest.raises(EvalFileError, match="no such file"):
        load_question_set(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    "path",
    sorted((REPO_ROOT / "examples").glob("*/eval.yaml")),
    ids=lambda path: path.parent.name,
)
def test_the_example_question_sets_are_valid(path: Path) -> None:
    loaded = load_question_set(path)

    assert loaded.questions
    assert all(q.turns for q in loaded.questions if q.kind is QuestionKind.MULTITURN)
