"""Augmentation: new wordings of the customer's question only, never of the answer or its facts,
and only ever from the train split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from training.data.augment import augment_examples
from training.data.back_translation import FolderTranslator, Lang, back_translate
from training.data.examples import ChatExample
from training.data.rewrites import synonym_rewrites, template_rewrites
from training.data.split import split_examples


def chat(turns: Sequence[str], lang: str, facts: Sequence[str] = ()) -> ChatExample:
    roles = ("user", "assistant")
    return ChatExample.model_validate(
        {
            "messages": [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)],
            "lang": lang,
            "facts": list(facts),
        }
    )


TRAIN = [
    chat(
        ["How much is shipping for my order?", "Standard delivery costs ¥10; free from ¥99."],
        "en",
        ["¥10", "¥99"],
    ),
    chat(["Can I return an item I bought last week?", "Within 7 days of delivery."], "en", ["7"]),
    chat(["运费怎么算？", "普通快递每单10元，满99元免运费。"], "zh", ["10元", "99元"]),
    chat(
        ["路由器怎么重置？", "按住RESET键5秒。", "快递多久能到？", "发货后2–4天送达。"],
        "zh",
        ["2–4天"],
    ),
]


def test_only_the_last_customer_turn_changes_and_the_answer_and_facts_do_not() -> None:
    result = augment_examples(TRAIN, per_example=3, seed=1)
    made_from: dict[int, list[ChatExample]] = {}
    source = -1
    for example in result.examples:
        if example.augmented:
            made_from[source].append(example)
        else:
            source += 1
            made_from[source] = []
            assert example == TRAIN[source]  # given rows come back unchanged, in order
    assert all(len(rows) == 3 for rows in made_from.values())
    for position, rows in made_from.items():
        original = TRAIN[position]
        for row in rows:
            assert row.origin in ("augment:synonym", "augment:template")
            assert (row.answer, row.facts, row.lang) == (
                original.answer,
                original.facts,
                original.lang,
            )
            assert row.messages[:-2] == original.messages[:-2]  # earlier turns untouched
            assert row.messages[-2].role == "user"
            assert row.messages[-2].content != original.messages[-2].content
    follow_ups = [row.messages[-2].content for row in made_from[3]]
    assert all("快递" in text or "物流" in text for text in follow_ups)


def test_no_wording_is_added_twice_or_repeats_a_given_question() -> None:
    result = augment_examples(TRAIN, per_example=5, seed=0)
    questions = [example.messages[-2].content for example in result.examples]
    assert len(questions) == len(set(questions))
    assert result.report.rows_out == len(result.examples)
    assert result.report.rows_in == len(TRAIN)
    assert sum(result.report.produced.values()) == len(result.examples) - len(TRAIN)


def test_the_same_seed_gives_the_same_rows_and_the_order_of_rows_does_not_matter() -> None:
    first = augment_examples(TRAIN, per_example=2, seed=5)
    assert first.examples == augment_examples(TRAIN, per_example=2, seed=5).examples
    reversed_rows = augment_examples(list(reversed(TRAIN)), per_example=2, seed=5)
    assert sorted(e.model_dump_json() for e in first.examples) == sorted(
        e.model_dump_json() for e in reversed_rows.examples
    )
    other_seed = augment_examples(TRAIN, per_example=2, seed=6)
    assert first.examples != other_seed.examples


def test_rows_marked_eval_are_refused() -> None:
    split = split_examples(TRAIN, eval_share=0.3, seed=0)
    assert split.eval
    with pytest.raises(ValueError, match="marked eval"):
        augment_examples(split.train + split.eval)
    # the train side of a split is what augmentation is for; its rows stay marked train
    augmented = augment_examples(split.train, per_example=1)
    assert {row.split for row in augmented.examples} == {"train"}


def test_augmented_rows_are_kept_but_not_augmented_again() -> None:
    already = TRAIN[0].model_copy(update={"origin": "augment:template"})
    result = augment_examples([already], per_example=2)
    assert result.examples == [already]
    assert result.report.not_augmented == {"already augmented": 1}


def test_back_translation_is_skipped_without_models_and_the_report_says_so() -> None:
    report = augment_examples(TRAIN).report
    assert report.back_translation == "skipped: no translation model folder given"
    assert "augment:backtranslation" not in report.produced
    assert "  back-translation: skipped: no translation model folder given" in (
        report.summary_lines()
    )


class PhrasebookTranslator:
    """Translates from a fixed phrasebook: the behaviour of a translation model, made exact."""

    def __init__(self, phrases: dict[tuple[str, str], str]) -> None:
        self.phrases = phrases
        self.calls: list[tuple[Lang, Lang, int]] = []

    def translate(self, texts: Sequence[str], *, source: Lang, target: Lang) -> list[str]:
        self.calls.append((source, target, len(texts)))
        return [self.phrases.get((target, text), "") for text in texts]


def test_back_translation_adds_a_usable_rewording_and_rejects_the_rest() -> None:
    translator = PhrasebookTranslator(
        {
            ("zh", "How much is shipping for my order?"): "我的订单运费多少？",
            ("en", "我的订单运费多少？"): "What does delivery of my order cost?",
            ("zh", "Can I return an item I bought last week?"): "上周买的东西能退吗？",
            # back as the same question: no new wording
            ("en", "上周买的东西能退吗？"): "Can I return an item I bought last week?",
            ("en", "运费怎么算？"): "How is shipping calculated?",
            # back in the wrong language
            ("zh", "How is shipping calculated?"): "How is shipping calculated?",
        }
    )
    result = augment_examples(TRAIN, per_example=3, seed=0, translation=translator)
    back_translated = [e for e in result.examples if e.origin == "augment:backtranslation"]
    assert [row.messages[-2].content for row in back_translated] == [
        "What does delivery of my order cost?"
    ]
    assert back_translated[0].answer == TRAIN[0].answer
    assert result.report.back_translation == "ran: 1 questions reworded, 3 translations rejected"
    assert translator.calls == [("en", "zh", 2), ("zh", "en", 2), ("zh", "en", 2), ("en", "zh", 2)]


def test_a_translation_model_folder_needs_both_directions(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such translation model folder"):
        augment_examples(TRAIN, translation=tmp_path / "missing")
    (tmp_path / "en-zh").mkdir()
    (tmp_path / "en-zh" / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="missing: zh-en"):
        FolderTranslator(tmp_path)


def test_a_seq2seq_model_folder_translates_offline(tmp_path: Path) -> None:
    """A tiny random BART per direction, saved the way real opus-mt folders are: the loading,
    batching and decoding run for real (the words are random)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    symbols = ["<pad>", "<s>", "</s>", "<unk>", *"abcdefghijklmnopqrstuvwxyz ?", *"运费怎么算"]
    vocabulary = {symbol: number for number, symbol in enumerate(symbols)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=len(vocabulary),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    model = BartForConditionalGeneration(config)
    for direction in ("en-zh", "zh-en"):
        fast.save_pretrained(tmp_path / direction)
        model.save_pretrained(tmp_path / direction)

    translator = FolderTranslator(tmp_path, batch_size=2, max_new_tokens=6, num_beams=1)
    first_leg = translator.translate(
        ["how much is shipping?", "", "hi", "why"], source="en", target="zh"
    )
    assert len(first_leg) == 4 and first_leg[1] == ""
    assert all(isinstance(text, str) for text in first_leg)
    assert len(back_translate(["运费怎么算"], "zh", translator)) == 1


@pytest.mark.parametrize(
    ("question", "lang", "expected"),
    [
        ("How much is shipping?", "en", "How much is delivery?"),
        ("Can I return an item?", "en", "Can I return a product?"),
        ("Can I return an item?", "en", "Is it possible to return an item?"),
        ("Shipping to Macau?", "en", "Delivery to Macau?"),
        ("运费怎么算？", "zh", "邮费怎么算？"),
        ("可以退货吗？", "zh", "能退货吗？"),
    ],
)
def test_synonyms_swap_whole_words_and_keep_articles_and_capitals_right(
    question: str, lang: Lang, expected: str
) -> None:
    assert expected in synonym_rewrites(question, lang)


def test_synonyms_never_touch_protected_names_or_unrelated_words() -> None:
    assert synonym_rewrites("中通快递坏了怎么办", "zh") == ["中通快递出问题了怎么办"]
    assert synonym_rewrites("What is my order number?", "en") == []
    assert synonym_rewrites("Is the shippingbox free?", "en") == []
    assert synonym_rewrites("智能插座", "zh") == []
    assert synonym_rewrites("可以吗？", "zh") == []  # "能吗？" alone reads as a fragment


def test_templates_fit_the_question() -> None:
    english = template_rewrites("How do I reset my router", "en")
    assert "Hi, how do I reset my router" in english
    assert "How do I reset my router? Thanks!" in english
    assert "Quick question: How do I reset my router" in english
    chinese = template_rewrites("运费怎么算？", "zh")
    assert {"请问运费怎么算？", "运费怎么算呢？", "运费怎么算？谢谢！"} <= set(chinese)
    assert not any("吗呢" in text for text in template_rewrites("可以退货吗？", "zh"))
    assert not any(t.startswith("请问请问") for t in template_rewrites("请问运费多少？", "zh"))
    assert not any(text.endswith("呢？") for text in template_rewrites("收到的东西坏了", "zh"))
