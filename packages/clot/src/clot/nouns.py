"""Noun extraction for condition words, with one offline back end per language.

"Let's Think Outside the Box" (Zhong et al., CVPR 2024, arXiv 2312.02439) extracts nouns with NLTK ``pos_tag`` (tags starting with ``N``) for English, jieba ``posseg``
(flags containing ``n``) for Chinese and Janome (part of speech ``名詞``) for Japanese. NLTK's tagger
needs data downloaded separately, so the English default is a lexicon look-up through lemminflect, which
ships its tables in the wheel; a stopword and suffix rule set is the fallback when neither is usable.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Iterable

__all__ = [
    "BACKENDS",
    "NounExtractor",
    "build_noun_set",
    "extract_nouns_heuristic",
    "make_noun_extractor",
]

logger = logging.getLogger(__name__)

NounExtractor = Callable[[str], list[str]]

BACKENDS = ("auto", "nltk", "lemminflect", "jieba", "janome", "heuristic")

_ENGLISH_STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "one",
        "thing",
        "things",
        "someone",
        "something",
        "anything",
        "everything",
        "nothing",
        "got",
        "get",
        "gets",
        "really",
        "still",
        "even",
        "ever",
        "also",
        "lets",
        "let's",
        "let",
        "s",
        "t",
        "don't",
        "can't",
        "won't",
        "i'm",
        "it's",
        "that's",
    ]
)
_NOUN_SUFFIXES = (
    "tion",
    "sion",
    "ment",
    "ness",
    "ity",
    "ance",
    "ence",
    "ship",
    "hood",
    "ism",
    "ist",
    "er",
    "or",
)
_NON_NOUN_SUFFIXES = ("ly", "ing", "ed", "ous", "ful", "ive", "able", "ible", "ish", "less")
_ENGLISH_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
# Function words among Chinese nouns that jieba tags with an "n" flag but carry no content.
_CHINESE_SKIP = frozenset({"时候", "东西", "事情"})


def _unique(words: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for word in words:
        if word and word not in seen:
            seen[word] = None
    return list(seen)


def extract_nouns_heuristic(text: str) -> list[str]:
    """Return likely English nouns by stopword and suffix rules.

    No tagger is needed. A word counts as a noun unless it is a stopword, shorter than three letters, or
    ends in a typical adjective, adverb or verb-form suffix without also ending in a typical noun suffix.
    The rules are a fallback and are far less accurate than a tagger.
    """
    nouns = []
    for match in _ENGLISH_WORD.finditer(text):
        word = match.group(0).lower().strip("'-")
        if len(word) < 3 or word in _ENGLISH_STOPWORDS:
            continue
        if word.endswith(_NON_NOUN_SUFFIXES) and not word.endswith(_NOUN_SUFFIXES):
            continue
        nouns.append(word)
    return _unique(nouns)


def _extract_english_lemminflect(text: str) -> list[str]:
    import lemminflect

    nouns = []
    for match in _ENGLISH_WORD.finditer(text):
        word = match.group(0).strip("'-")
        lower = word.lower()
        if len(lower) < 2 or lower in _ENGLISH_STOPWORDS:
            continue
        lemmas = lemminflect.getAllLemmas(lower)
        if "NOUN" in lemmas or "PROPN" in lemmas:
            nouns.append(lower)
    return _unique(nouns)


def _make_english_nltk() -> NounExtractor:
    import nltk

    # Raises LookupError when the tagger or tokenizer data is not installed.
    nltk.pos_tag(["probe"])

    def extract(text: str) -> list[str]:
        words = _ENGLISH_WORD.findall(text)
        tagged = nltk.pos_tag(words)
        return _unique(word.lower() for word, tag in tagged if tag.startswith("N"))

    return extract


def _make_chinese_jieba() -> NounExtractor:
    # jieba 0.42 imports pkg_resources and has invalid escape sequences, which warn on import.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import jieba
        import jieba.posseg

    jieba.setLogLevel(logging.WARNING)

    def extract(text: str) -> list[str]:
        words = []
        for pair in jieba.posseg.cut(text):
            if "n" in pair.flag and len(pair.word.strip()) > 0 and pair.word not in _CHINESE_SKIP:
                words.append(pair.word.strip())
        return _unique(words)

    return extract


def _make_japanese_janome() -> NounExtractor:
    from janome.tokenizer import Tokenizer

    tokenizer = Tokenizer()

    def extract(text: str) -> list[str]:
        words = []
        for token in tokenizer.tokenize(text):
            parts = token.part_of_speech.split(",")
            # Pronouns and non-independent nouns (こと, もの) are nouns to Janome but make poor conditions.
            if parts[0] == "名詞" and parts[1] not in ("代名詞", "非自立", "数", "接尾"):
                words.append(token.surface)
        return _unique(words)

    return extract


def _make_cjk_fallback() -> NounExtractor:
    """Split on punctuation and keep runs of two or more CJK or Latin characters."""
    pattern = re.compile(r"[\u4e00-\u9fff\u30a0-\u30ffA-Za-z]{2,}")

    def extract(text: str) -> list[str]:
        return _unique(pattern.findall(text))

    return extract


_FACTORIES: dict[tuple[str, str], Callable[[], NounExtractor]] = {
    ("en", "nltk"): _make_english_nltk,
    ("en", "lemminflect"): lambda: (__import__("lemminflect"), _extract_english_lemminflect)[1],
    ("en", "heuristic"): lambda: extract_nouns_heuristic,
    ("zh", "jieba"): _make_chinese_jieba,
    ("zh", "heuristic"): _make_cjk_fallback,
    ("ja", "janome"): _make_japanese_janome,
    ("ja", "heuristic"): _make_cjk_fallback,
}
_AUTO_ORDER = {
    "en": ("nltk", "lemminflect", "heuristic"),
    "zh": ("jieba", "heuristic"),
    "ja": ("janome", "heuristic"),
}


def make_noun_extractor(language: str, backend: str = "auto") -> NounExtractor:
    """Build a noun extractor for ``language``.

    Args:
        language: ``"en"``, ``"zh"`` or ``"ja"``.
        backend: ``"auto"`` tries the paper's tool first and falls back in the order NLTK, lemminflect,
            heuristic (English), jieba, heuristic (Chinese) and Janome, heuristic (Japanese), logging
            which back end is used. A named back end raises ``ImportError`` or ``LookupError`` when it
            cannot run.

    Raises:
        ValueError: For an unknown language or a back end that does not serve the language.
    """
    if language not in _AUTO_ORDER:
        raise ValueError(f"unknown language {language!r}; valid languages are {', '.join(_AUTO_ORDER)}.")
    if backend != "auto":
        factory = _FACTORIES.get((language, backend))
        if factory is None:
            valid = ", ".join(("auto", *_AUTO_ORDER[language]))
            raise ValueError(
                f"noun back end {backend!r} does not serve {language!r}; valid back ends: {valid}."
            )
        return factory()

    for name in _AUTO_ORDER[language]:
        try:
            extractor = _FACTORIES[(language, name)]()
        except (ImportError, LookupError) as error:
            logger.info(
                "noun back end %s for %s is unavailable (%s), trying the next one", name, language, error
            )
            continue
        logger.debug("noun back end for %s: %s", language, name)
        return extractor
    raise RuntimeError(f"no noun back end available for {language!r}")  # unreachable: heuristic always loads


def build_noun_set(
    texts_by_language: dict[str, Iterable[str]],
    *,
    backend: str = "auto",
    exclude: Iterable[str] = (),
) -> dict[str, list[str]]:
    """Extract, deduplicate and sort the nouns of every response, per language.

    This is the noun set S of the self-refinement stage. The paper also screens S by hand; ``exclude``
    takes the words such a screening removed.
    """
    excluded = set(exclude)
    noun_set: dict[str, list[str]] = {}
    for language, texts in texts_by_language.items():
        extract = make_noun_extractor(language, backend)
        nouns: set[str] = set()
        for text in texts:
            nouns.update(extract(text))
        noun_set[language] = sorted(nouns - excluded)
    return noun_set
