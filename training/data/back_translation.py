"""Back-translation: a question translated into the other language and back, for a rewording no
synonym table holds.

It runs only when translation models are given: a folder with ``en-zh/`` and ``zh-en/``, each a
Hugging Face sequence-to-sequence model saved with ``save_pretrained`` (the Marian opus-mt
models, for example). None ships with chatq and nothing is downloaded: without a folder,
augmentation skips this step and its report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from tqdm import tqdm

from shared.logs import get_logger

log = get_logger(__name__)

Lang = Literal["en", "zh"]
DIRECTIONS: tuple[tuple[Lang, Lang], ...] = (("en", "zh"), ("zh", "en"))
MAX_INPUT_TOKENS = 256
"""A question longer than this is cut (customer questions are far shorter)."""


class Translator(Protocol):
    def translate(self, texts: Sequence[str], *, source: Lang, target: Lang) -> list[str]:
        """One translation per text, in order."""
        ...


def other_language(lang: Lang) -> Lang:
    return "zh" if lang == "en" else "en"


def back_translate(texts: Sequence[str], lang: Lang, translator: Translator) -> list[str]:
    """Each text translated into the other language and back into ``lang``."""
    if not texts:
        return []
    pivot = other_language(lang)
    middle = translator.translate(texts, source=lang, target=pivot)
    return translator.translate(middle, source=pivot, target=lang)


class FolderTranslator:
    """The two models of a translation folder (``<dir>/en-zh``, ``<dir>/zh-en``), loaded from
    disk only, on first use."""

    def __init__(
        self,
        model_dir: Path,
        *,
        batch_size: int = 16,
        max_new_tokens: int = 128,
        num_beams: int = 4,
        progress: bool = False,
    ) -> None:
        if not model_dir.is_dir():
            raise FileNotFoundError(f"{model_dir}: no such translation model folder")
        missing = [
            f"{source}-{target}"
            for source, target in DIRECTIONS
            if not (model_dir / f"{source}-{target}" / "config.json").is_file()
        ]
        if missing:
            raise ValueError(
                f"{model_dir}: a translation model folder needs en-zh/ and zh-en/, each a "
                f"Hugging Face seq2seq model (save_pretrained); missing: {', '.join(missing)}"
            )
        self.model_dir = model_dir
        self._batch_size = batch_size
        self._max_new_tokens = max_new_tokens
        self._num_beams = num_beams
        self._progress = progress
        self._loaded: dict[tuple[Lang, Lang], tuple[Any, Any]] = {}

    def translate(self, texts: Sequence[str], *, source: Lang, target: Lang) -> list[str]:
        import torch

        tokenizer, model = self._model(source, target)
        translations = [""] * len(texts)
        # an empty text (a failed first leg) has nothing to translate and no tokens to encode
        todo = [position for position, text in enumerate(texts) if text.strip()]
        batches = range(0, len(todo), self._batch_size)
        for start in tqdm(
            batches, desc=f"translating {source}→{target}", unit="batch", disable=not self._progress
        ):
            positions = todo[start : start + self._batch_size]
            inputs = tokenizer(
                [texts[position] for position in positions],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=MAX_INPUT_TOKENS,
            )
            with torch.inference_mode():
                output = model.generate(
                    **inputs, max_new_tokens=self._max_new_tokens, num_beams=self._num_beams
                )
            decoded = tokenizer.batch_decode(output, skip_special_tokens=True)
            for position, text in zip(positions, decoded, strict=True):
                translations[position] = text.strip()
        return translations

    def _model(self, source: Lang, target: Lang) -> tuple[Any, Any]:
        if (source, target) not in self._loaded:
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            folder = self.model_dir / f"{source}-{target}"
            log.info("loading translation model", folder=str(folder))
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForSeq2SeqLM.from_pretrained(folder, local_files_only=True)
            self._loaded[(source, target)] = (tokenizer, model.eval())
        return self._loaded[(source, target)]
