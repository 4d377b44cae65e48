"""Prompt templates of associable instruction tuning in English, Chinese and Japanese.

Every prompt has the shape of "Let's Think Outside the Box" (arXiv 2312.02439): a task-specific
request that contains the phrase "Let's think outside the box.", followed by the optional question,
condition word, masked answer or options. The image itself is not part of the text: the model backbone
places it at the start of the user turn. Three templates per task and language follow the paper's
count; the wording is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "OUTSIDE_THE_BOX",
    "TASKS",
    "PromptParts",
    "format_options",
    "format_ranking_target",
    "format_selection_target",
    "num_templates",
    "option_letter",
    "render_prompt",
]

TASKS = ("generation", "generation_condition", "mask", "selection", "ranking")

OUTSIDE_THE_BOX = {
    "en": "Let's think outside the box.",
    "zh": "让我们跳出框框思考。",
    "ja": "常識にとらわれずに考えてみましょう。",
}

_SUBJECTS = {
    "en": {
        "I2T": "the image",
        "T2T": "the question",
        "IT2T": "the image, whose text has a [MASK] to complete",
    },
    "zh": {"I2T": "图片", "T2T": "问题", "IT2T": "图片（图中文字有一处[MASK]需要补全）"},
    "ja": {"I2T": "画像", "T2T": "お題", "IT2T": "画像（画像内の文章に[MASK]の空欄があります）"},
}

_LABELS = {
    "en": {"question": "Question", "condition": "Condition", "answer": "Answer", "options": "Options"},
    "zh": {"question": "问题", "condition": "条件词", "answer": "回答", "options": "选项"},
    "ja": {"question": "お題", "condition": "条件語", "answer": "回答", "options": "選択肢"},
}

# Each template has the placeholders {subject} (the game input), {box} (the think-outside-the-box
# phrase) and, for selection and ranking, {m} (option count) and {choose} (what to pick).
_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "generation": (
            "Based on {subject}, think of a sentence that is unexpected and humorous. {box} "
            "A satisfactory response is",
            "Look at {subject} and come up with a reply that is surprising and funny. {box} A good reply is",
            "Given {subject}, write one witty and unexpected response. {box} The response is",
        ),
        "generation_condition": (
            "Based on {subject}, think of a sentence that is unexpected and humorous and contains the "
            "conditional word. {box} A surprising and funny answer containing the conditional word is",
            "Look at {subject} and come up with a surprising, funny reply that uses the condition word. {box} "
            "A good reply containing the condition word is",
            "Given {subject}, write one witty response that includes the condition word. {box} "
            "The response with the condition word is",
        ),
        "mask": (
            "Based on {subject}, part of a humorous answer was replaced by [MASK]. Fill in the masked part so "
            "that the answer is unexpected and funny. {box} The masked content is",
            "A funny reply to {subject} is missing a piece, marked [MASK]. Guess the missing words. {box} "
            "The missing words are",
            "Complete the [MASK] in this humorous answer to {subject}. {box} The [MASK] stands for",
        ),
        "selection": (
            "Based on {subject}, choose {choose} from the {m} options below. {box} The answer is",
            "Which of the {m} replies to {subject} below is the funniest? Pick {choose}. {box} The choice is",
            "Read {subject} and the {m} candidate responses, then select {choose}. {box} The selection is",
        ),
        "ranking": (
            "Based on {subject}, rank the {m} responses below from the funniest to the least funny. {box} "
            "The ranking is",
            "Order the {m} replies to {subject} by how humorous they are, funniest first. {box} The order is",
            "Sort these {m} answers to {subject} from most to least amusing. {box} The sorted answers are",
        ),
    },
    "zh": {
        "generation": (
            "根据{subject}，想一句出人意料又幽默的话。{box}令人满意的回复是",
            "看着{subject}，给出一个让人意想不到的搞笑回答。{box}好的回答是",
            "针对{subject}，写一句机智又出乎意料的回应。{box}回应是",
        ),
        "generation_condition": (
            "根据{subject}，想一句出人意料又幽默、并且包含条件词的话。{box}包含条件词的惊喜又好笑的回答是",
            "看着{subject}，用给定的条件词给出一个让人意想不到的搞笑回答。{box}包含条件词的好回答是",
            "针对{subject}，写一句包含条件词的机智回应。{box}包含条件词的回应是",
        ),
        "mask": (
            "根据{subject}，一个幽默回答中的一部分被替换成了[MASK]。请补全被遮住的内容，使回答出人意料又好笑。"
            "{box}被遮住的内容是",
            "针对{subject}的一个搞笑回答缺了一块，用[MASK]标出。请猜出缺少的词。{box}缺少的词是",
            "补全这个针对{subject}的幽默回答中的[MASK]。{box}[MASK]代表",
        ),
        "selection": (
            "根据{subject}，从下面{m}个选项中选出{choose}。{box}答案是",
            "下面{m}个针对{subject}的回复中，哪个最好笑？请选出{choose}。{box}选择是",
            "阅读{subject}和{m}个候选回复，然后选出{choose}。{box}选出的是",
        ),
        "ranking": (
            "根据{subject}，把下面{m}个回复按好笑程度从高到低排序。{box}排序是",
            "按幽默程度给下面{m}个针对{subject}的回复排序，最好笑的排在前面。{box}顺序是",
            "把这{m}个针对{subject}的回答从最有趣到最无趣排列。{box}排列结果是",
        ),
    },
    "ja": {
        "generation": (
            "{subject}をもとに、意外でユーモラスな一言を考えてください。{box}満足のいく回答は",
            "{subject}を見て、驚きがあって面白い返しを考えてください。{box}良い返しは",
            "{subject}に対して、気の利いた意外な回答を一つ書いてください。{box}回答は",
        ),
        "generation_condition": (
            "{subject}をもとに、条件語を含む意外でユーモラスな一言を考えてください。{box}"
            "条件語を含む意外で面白い回答は",
            "{subject}を見て、条件語を使った驚きのある面白い返しを考えてください。{box}条件語を含む良い返しは",
            "{subject}に対して、条件語を含む気の利いた回答を一つ書いてください。{box}条件語を含む回答は",
        ),
        "mask": (
            "{subject}に対するユーモラスな回答の一部が[MASK]に置き換えられています。"
            "回答が意外で面白くなるように、隠された部分を埋めてください。{box}隠された内容は",
            "{subject}への面白い回答の一部が[MASK]で抜けています。抜けた言葉を当ててください。{box}抜けた言葉は",
            "{subject}へのユーモラスな回答にある[MASK]を補ってください。{box}[MASK]に入るのは",
        ),
        "selection": (
            "{subject}をもとに、次の{m}個の選択肢から{choose}を選んでください。{box}答えは",
            "{subject}への次の{m}個の回答のうち、どれが一番面白いですか。{choose}を選んでください。{box}選択は",
            "{subject}と{m}個の候補を読んで、{choose}を選んでください。{box}選んだのは",
        ),
        "ranking": (
            "{subject}をもとに、次の{m}個の回答を面白い順に並べてください。{box}順位は",
            "{subject}への{m}個の回答を、ユーモアの強い順に並べ替えてください。{box}並び順は",
            "{subject}に対するこれら{m}個の回答を、最も面白いものから順に並べてください。{box}並べた結果は",
        ),
    },
}


def _choose_phrase(language: str, num_correct: int) -> str:
    if language == "en":
        if num_correct == 1:
            return "the most humorous and unexpected response"
        return f"the {num_correct} most humorous and unexpected responses"
    if language == "zh":
        if num_correct == 1:
            return "最幽默、最出人意料的一个回复"
        return f"最幽默的{num_correct}个回复"
    if num_correct == 1:
        return "最もユーモラスで意外な回答を一つ"
    return f"最も面白い回答を{num_correct}個"


def _check(task: str, language: str) -> None:
    if language not in _TEMPLATES:
        raise ValueError(f"unknown language {language!r}; valid languages are {', '.join(_TEMPLATES)}.")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks are {', '.join(TASKS)}.")


def num_templates(task: str, language: str) -> int:
    """Return how many templates ``task`` has in ``language``."""
    _check(task, language)
    return len(_TEMPLATES[language][task])


def option_letter(index: int) -> str:
    """Return the option id for a zero-based position: A, B, C, ..."""
    if not 0 <= index < 26:
        raise ValueError(f"option index must be in [0, 26), got {index}.")
    return chr(ord("A") + index)


def format_options(options: list[str]) -> str:
    """Render options as ``A. text`` lines."""
    return "\n".join(f"{option_letter(i)}. {text}" for i, text in enumerate(options))


def format_selection_target(options: list[str], correct: list[int]) -> str:
    """Render the selection answer ``A. text``, one line per correct option, in letter order."""
    return "\n".join(f"{option_letter(i)}. {options[i]}" for i in sorted(correct))


def format_ranking_target(options: list[str], order: list[int]) -> str:
    """Render the ranking answer ``1. A. text 2. C. text ...`` from best to worst option index."""
    return " ".join(f"{rank}. {option_letter(i)}. {options[i]}" for rank, i in enumerate(order, start=1))


@dataclass(frozen=True)
class PromptParts:
    """The inputs that a prompt shows besides its template.

    Attributes:
        game_type: ``"I2T"``, ``"T2T"`` or ``"IT2T"``; selects the words that name the input.
        question: Question text of a T2T game.
        condition: Condition word of a conditional generation prompt.
        masked_answer: Answer with ``[MASK]`` of a masked instruction.
        options: Options of a selection or ranking prompt, shown as ``A. text`` lines.
        num_correct: How many options a selection prompt asks for.
    """

    game_type: str
    question: str | None = None
    condition: str | None = None
    masked_answer: str | None = None
    options: tuple[str, ...] = ()
    num_correct: int = 1


def render_prompt(task: str, language: str, template_id: int, parts: PromptParts) -> str:
    """Render one prompt of ``task`` in ``language`` with template number ``template_id``.

    Raises:
        ValueError: For an unknown task, language, game type or template id, or a prompt that misses the
            part its task needs (a condition, a masked answer, options).
    """
    _check(task, language)
    templates = _TEMPLATES[language][task]
    if not 0 <= template_id < len(templates):
        raise ValueError(
            f"template_id for {task}/{language} must be in [0, {len(templates)}), got {template_id}."
        )
    if parts.game_type not in _SUBJECTS[language]:
        raise ValueError(f"unknown game type {parts.game_type!r}; valid types are I2T, T2T, IT2T.")
    if task == "generation_condition" and not parts.condition:
        raise ValueError("a generation_condition prompt needs a non-empty condition word.")
    if task == "mask" and (not parts.masked_answer or "[MASK]" not in parts.masked_answer):
        raise ValueError("a mask prompt needs an answer that contains [MASK].")
    if task in ("selection", "ranking") and len(parts.options) < 2:
        raise ValueError(f"a {task} prompt needs at least 2 options, got {len(parts.options)}.")
    if task == "selection" and not 1 <= parts.num_correct < len(parts.options):
        raise ValueError(
            f"num_correct must be in [1, {len(parts.options)}) for {len(parts.options)} options, "
            f"got {parts.num_correct}."
        )

    labels = _LABELS[language]
    colon = ": " if language == "en" else "："
    head = templates[template_id].format(
        subject=_SUBJECTS[language][parts.game_type],
        box=OUTSIDE_THE_BOX[language],
        m=len(parts.options),
        choose=_choose_phrase(language, parts.num_correct),
    )

    lines = [head]
    if parts.question:
        lines.append(f"{labels['question']}{colon}{parts.question}")
    if task == "generation_condition":
        lines.append(f"{labels['condition']}{colon}{parts.condition}")
    if task == "mask":
        lines.append(f"{labels['answer']}{colon}{parts.masked_answer}")
    if task in ("selection", "ranking"):
        lines.append(f"{labels['options']}{colon}")
        lines.append(format_options(list(parts.options)))
    return "\n".join(lines)
