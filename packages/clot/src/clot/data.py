"""Reader for the Oogiri-GO humour data set in its published JSONL layout.

Oogiri-GO is the data set of "Let's Think Outside the Box: Exploring Leap-of-Thought in Large Language
Models with Creative Humor Generation" (Zhong et al., CVPR 2024, arXiv 2312.02439). Each language has one
file (``en.jsonl``, ``cn.jsonl``, ``jp.jsonl``) with one object per line and the fields ``type``
(``"T2T"``, ``"I2T"`` or ``"IT2T"``), ``question``, ``image`` (an image id), ``text`` (the humorous
response) and ``star`` (the like count).
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GAME_TYPES",
    "IMAGE_SUFFIXES",
    "LANGUAGES",
    "LANGUAGE_FILES",
    "OogiriDataError",
    "OogiriSample",
    "group_by_input",
    "read_oogiri_dataset",
    "read_oogiri_jsonl",
    "resolve_image",
    "split_by_input",
]

logger = logging.getLogger(__name__)

GAME_TYPES = ("I2T", "T2T", "IT2T")
LANGUAGES = ("en", "zh", "ja")
# The published files use "cn" and "jp"; inside the library languages use ISO 639-1 codes.
LANGUAGE_FILES = {"en": "en.jsonl", "zh": "cn.jsonl", "ja": "jp.jsonl"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


class OogiriDataError(ValueError):
    """Invalid Oogiri-GO input: a malformed line, an unknown type, a missing image or an empty answer."""


@dataclass(frozen=True)
class OogiriSample:
    """One Oogiri-GO response to one game input.

    Attributes:
        game_type: ``"I2T"``, ``"T2T"`` or ``"IT2T"``.
        language: ``"en"``, ``"zh"`` or ``"ja"``.
        question: Text prompt of a T2T game, ``None`` for image games (and for Japanese T2T games whose
            question is rendered in the image).
        image: Resolved path of the input image, ``None`` for T2T games.
        image_id: Image id as written in the JSONL file.
        text: The humorous response (the ground-truth response, GTR).
        star: Like count, the human preference; ``None`` where the source has none.
        index: Line number (1-based) in the source file, for error messages.
    """

    game_type: str
    language: str
    question: str | None
    image: Path | None
    image_id: str | None
    text: str
    star: int | None = None
    index: int = 0

    @property
    def input_key(self) -> str:
        """Key shared by every response to the same game input (same image or same question)."""
        if self.image_id is not None:
            return f"{self.language}/{self.game_type}/image:{self.image_id}"
        return f"{self.language}/{self.game_type}/question:{self.question}"


def resolve_image(image_root: Path, image_id: str) -> Path | None:
    """Return the file for ``image_id`` under ``image_root``, or ``None`` when no file matches.

    The id may already carry a suffix; otherwise the common image suffixes are tried in order.
    """
    direct = image_root / image_id
    if direct.suffix.lower() in IMAGE_SUFFIXES and direct.is_file():
        return direct
    for suffix in IMAGE_SUFFIXES:
        candidate = image_root / f"{image_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _parse_star(value: object, *, where: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise OogiriDataError(f"{where}: field 'star' must be a like count, got {value!r}.")
    try:
        star = int(value)
    except (TypeError, ValueError):
        raise OogiriDataError(f"{where}: field 'star' must be a like count, got {value!r}.") from None
    if star < 0:
        raise OogiriDataError(f"{where}: field 'star' must be >= 0, got {star}.")
    return star


def _parse_line(
    record: object, *, language: str, image_root: Path | None, where: str, index: int
) -> OogiriSample:
    if not isinstance(record, dict):
        raise OogiriDataError(f"{where}: expected a JSON object, got {type(record).__name__}.")

    game_type = record.get("type")
    if game_type not in GAME_TYPES:
        raise OogiriDataError(
            f"{where}: unknown game type {game_type!r}; valid types are {', '.join(GAME_TYPES)}."
        )

    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise OogiriDataError(
            f"{where}: empty answer in field 'text' ({text!r}); remove the line or fill it."
        )

    question = record.get("question")
    if question is not None and not isinstance(question, str):
        raise OogiriDataError(f"{where}: field 'question' must be a string or null, got {question!r}.")
    question = question.strip() if question else None

    image_id = record.get("image")
    image_path: Path | None = None
    if image_id is not None and image_id != "":
        image_id = str(image_id)
        if image_root is None:
            raise OogiriDataError(
                f"{where}: the sample refers to image {image_id!r} but no image root was given; "
                "pass image_root pointing at the folder with the Oogiri-GO images."
            )
        image_path = resolve_image(image_root, image_id)
        if image_path is None:
            raise OogiriDataError(
                f"{where}: image {image_id!r} not found under {image_root} "
                f"(tried the suffixes {', '.join(IMAGE_SUFFIXES)}); check the image root."
            )
    else:
        image_id = None

    if game_type in ("I2T", "IT2T") and image_id is None:
        raise OogiriDataError(f"{where}: a {game_type} sample needs an image id in field 'image'.")
    if game_type == "T2T" and question is None and image_id is None:
        raise OogiriDataError(f"{where}: a T2T sample needs a 'question' or an 'image' with the question.")

    return OogiriSample(
        game_type=game_type,
        language=language,
        question=question,
        image=image_path,
        image_id=image_id,
        text=text.strip(),
        star=_parse_star(record.get("star"), where=where),
        index=index,
    )


def read_oogiri_jsonl(
    path: str | Path,
    *,
    language: str,
    image_root: str | Path | None = None,
    limit: int | None = None,
) -> list[OogiriSample]:
    """Read one Oogiri-GO JSONL file.

    Args:
        path: The JSONL file.
        language: ``"en"``, ``"zh"`` or ``"ja"``.
        image_root: Folder holding the images named by the ``image`` field. Needed for I2T and IT2T lines.
        limit: Read at most this many samples.

    Raises:
        OogiriDataError: On a missing file, invalid JSON, an unknown type, a missing image or an empty
            answer. The message names the file and line.
    """
    path = Path(path)
    if language not in LANGUAGES:
        raise OogiriDataError(f"unknown language {language!r}; valid languages are {', '.join(LANGUAGES)}.")
    if not path.is_file():
        raise OogiriDataError(f"Oogiri-GO file not found: {path}.")
    root = Path(image_root) if image_root is not None else None
    if root is not None and not root.is_dir():
        raise OogiriDataError(f"image root not found: {root}.")

    samples: list[OogiriSample] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise OogiriDataError(f"{where}: invalid JSON ({error.msg}).") from None
            samples.append(
                _parse_line(record, language=language, image_root=root, where=where, index=line_number)
            )
            if limit is not None and len(samples) >= limit:
                break
    logger.info("read %d %s samples from %s", len(samples), language, path)
    return samples


def read_oogiri_dataset(
    data_root: str | Path,
    *,
    languages: tuple[str, ...] = LANGUAGES,
    image_root: str | Path | None = None,
    limit_per_language: int | None = None,
) -> list[OogiriSample]:
    """Read the per-language files of an Oogiri-GO folder.

    ``data_root`` contains ``en.jsonl``, ``cn.jsonl`` and ``jp.jsonl``; images are looked up in
    ``image_root`` (default ``data_root / "images"``). A language whose file is absent is skipped with a
    warning, and no file at all is an error.
    """
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise OogiriDataError(
            f"data folder not found: {data_root}; download zhongshsh/CLoT-Oogiri-GO from the Hugging Face Hub "
            "into it."
        )
    image_root = Path(image_root) if image_root is not None else data_root / "images"
    samples: list[OogiriSample] = []
    found = 0
    for language in languages:
        if language not in LANGUAGE_FILES:
            raise OogiriDataError(
                f"unknown language {language!r}; valid languages are {', '.join(LANGUAGES)}."
            )
        path = data_root / LANGUAGE_FILES[language]
        if not path.is_file():
            logger.warning("no %s file at %s, skipping %s", LANGUAGE_FILES[language], path, language)
            continue
        found += 1
        samples.extend(
            read_oogiri_jsonl(
                path,
                language=language,
                image_root=image_root if image_root.is_dir() else None,
                limit=limit_per_language,
            )
        )
    if found == 0:
        expected = ", ".join(LANGUAGE_FILES[language] for language in languages)
        raise OogiriDataError(
            f"no Oogiri-GO file ({expected}) found in {data_root}; download zhongshsh/CLoT-Oogiri-GO from "
            "the Hugging Face Hub into that folder."
        )
    return samples


def group_by_input(samples: list[OogiriSample]) -> dict[str, list[OogiriSample]]:
    """Group responses by game input, keeping file order inside each group."""
    groups: dict[str, list[OogiriSample]] = defaultdict(list)
    for sample in samples:
        groups[sample.input_key].append(sample)
    return dict(groups)


def split_by_input(
    samples: list[OogiriSample], *, test_fraction: float = 0.05, seed: int = 0
) -> tuple[list[OogiriSample], list[OogiriSample]]:
    """Split samples into train and test sets at the level of game inputs.

    The paper splits 95 % / 5 % at random. Splitting whole inputs instead (our choice) keeps every
    response to one question on the same side, so ranking questions over five responses can be built
    from the test set alone.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    keys = sorted(group_by_input(samples))
    random.Random(seed).shuffle(keys)
    num_test = max(1, round(len(keys) * test_fraction)) if len(keys) > 1 else 0
    test_keys = set(keys[:num_test])
    train = [sample for sample in samples if sample.input_key not in test_keys]
    test = [sample for sample in samples if sample.input_key in test_keys]
    return train, test
