import builtins

import pytest

from clot.nouns import build_noun_set, extract_nouns_heuristic, make_noun_extractor


def test_english_lemminflect_nouns():
    nouns = make_noun_extractor("en", "lemminflect")(
        "My cat opened a bakery because the mice kept asking for bread."
    )
    assert {"cat", "bakery", "mice", "bread"} <= set(nouns)
    assert "opened" not in nouns
    assert "because" not in nouns


def test_chinese_jieba_nouns():
    nouns = make_noun_extractor("zh", "jieba")("我的猫开了一家面包店，因为老鼠总是来要面包。")
    assert "猫" in nouns
    assert "老鼠" in nouns
    assert "因为" not in nouns


def test_japanese_janome_nouns():
    nouns = make_noun_extractor("ja", "janome")("猫がパン屋を開いたのは、ネズミがいつもパンをねだるからだ。")
    assert {"猫", "ネズミ", "パン"} <= set(nouns)
    assert "から" not in nouns


def test_heuristic_english():
    nouns = extract_nouns_heuristic("The happiness of the quickly running dogs was amazing.")
    assert "happiness" in nouns
    assert "dogs" in nouns
    for word in ("quickly", "the", "running"):
        assert word not in nouns


def test_auto_falls_back_without_packages(monkeypatch):
    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name.split(".")[0] in ("nltk", "lemminflect", "jieba", "janome"):
            raise ImportError(f"blocked {name}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)
    english = make_noun_extractor("en")
    assert "umbrella" in english("An umbrella for the fish.")
    chinese = make_noun_extractor("zh")
    assert chinese("面包店 老鼠") == ["面包店", "老鼠"]


def test_nltk_without_data_raises_or_missing():
    try:
        extractor = make_noun_extractor("en", "nltk")
    except (ImportError, LookupError):
        return
    assert "cat" in extractor("The cat sat.")


def test_unknown_language_and_backend():
    with pytest.raises(ValueError, match="unknown language"):
        make_noun_extractor("fr")
    with pytest.raises(ValueError, match="does not serve"):
        make_noun_extractor("en", "jieba")


def test_noun_set_dedup_sorted_and_excluded():
    noun_set = build_noun_set({"en": ["A cat and a cat.", "The dog and the cat."]}, exclude={"dog"})
    assert noun_set["en"] == ["cat"]
