"""A small Oogiri-style data set written for this project, in the Oogiri-GO file layout.

It lets every command run without downloading Oogiri-GO: 85 original responses (17 game inputs with
five responses each) in English, Chinese and Japanese, covering the three game types. Images are
photographs bundled with scikit-image; IT2T images get a caption band with a blank. The band text is
English in every language because no CJK font ships with Pillow. Like counts are made up.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from clot.data import LANGUAGE_FILES

__all__ = ["SAMPLE_CAPTIONS", "SAMPLE_GAMES", "write_sample_dataset"]

# (language, type, image id or None, scikit-image photo, IT2T band text or question, captions, responses)
# Each response is (text, likes).
SAMPLE_GAMES: list[dict] = [
    {
        "language": "en",
        "type": "T2T",
        "question": "What is the worst thing to hear from your pilot?",
        "responses": [
            ("Does anyone here know how to land? I only watched the takeoff tutorial.", 41),
            ("Good news: we are ahead of schedule. Bad news: this is not our planet.", 57),
            ("Please fasten your seatbelts, I am going to try something I saw in a movie.", 33),
            ("Hold on, my GPS says turn left at the cloud.", 18),
            ("We will be landing shortly, as soon as I find the brakes.", 25),
        ],
    },
    {
        "language": "en",
        "type": "T2T",
        "question": "Why did the robot quit its job?",
        "responses": [
            ("It found out the coffee machine was paid more.", 36),
            ("Its manager kept asking it to think outside the box, and it lives in a box.", 48),
            ("It wanted to spend more time with its charger.", 29),
            ("Too many humans asked it to prove it was not a robot.", 52),
            ("Its battery was burnt out, emotionally.", 14),
        ],
    },
    {
        "language": "en",
        "type": "T2T",
        "question": "What did the fridge say at the family meeting?",
        "responses": [
            ("I keep everything cool, but nobody ever asks how I feel inside.", 31),
            ("Whoever ate the cake at midnight, the light saw you.", 44),
            ("I am tired of being opened just to be stared at.", 39),
            ("The milk and I have decided to separate.", 27),
            ("Stop putting empty bottles back, I am not a museum.", 22),
        ],
    },
    {
        "language": "en",
        "type": "I2T",
        "image": "en-cat",
        "photo": "chelsea",
        "caption": "A tabby cat sitting on a floor and looking to the side.",
        "responses": [
            ("When you hear the fridge open from three rooms away.", 61),
            ("I did not knock the vase over. The vase jumped.", 47),
            ("Listening to my human explain why dinner is late.", 35),
            ("Planning a meeting with the dog about the sofa rules.", 23),
            ("Pretending the red dot was never important to me.", 30),
        ],
    },
    {
        "language": "en",
        "type": "I2T",
        "image": "en-coffee",
        "photo": "coffee",
        "caption": "A cup of coffee on a saucer with a spoon.",
        "responses": [
            ("My only coworker who never asks for a meeting.", 45),
            ("Monday called. It wants this cup back.", 38),
            ("The spoon is here for emotional support.", 26),
            ("Day three of teaching my coffee to make itself.", 19),
            ("This is not caffeine, it is a personality.", 51),
        ],
    },
    {
        "language": "en",
        "type": "I2T",
        "image": "en-rocket",
        "photo": "rocket",
        "caption": "A rocket standing on a launch pad under a clear sky.",
        "responses": [
            ("The most expensive way to avoid traffic.", 58),
            ("Mom, I am moving out, and I mean really out.", 42),
            ("Ten, nine, eight... wait, did anyone feed the cat?", 37),
            ("When your delivery driver really wants that five-star rating.", 28),
            ("Lost my keys, so I am checking the whole galaxy.", 21),
        ],
    },
    {
        "language": "en",
        "type": "IT2T",
        "image": "en-astronaut",
        "photo": "astronaut",
        "band": "The first thing I did in space: ____",
        "caption": "An astronaut in a white spacesuit in front of a flag.",
        "responses": [
            ("Checked if my phone had signal.", 40),
            ("Asked where the toilet is. It is complicated.", 53),
            ("Looked for the edge of the flat earth. Still looking.", 34),
            ("Tried to open a window.", 46),
            ("Posted a selfie with no likes, nobody was there.", 24),
        ],
    },
    {
        "language": "en",
        "type": "IT2T",
        "image": "en-camera",
        "photo": "camera",
        "band": "Photographer's secret: ____",
        "caption": "A man with a camera on a tripod in a field.",
        "responses": [
            ("The tripod takes the good pictures, I just carry it.", 43),
            ("Shout cheese, then run before they see the photo.", 36),
            ("There is no lens cap. There was never a lens cap.", 27),
            ("I point it at the grass until someone pays me.", 32),
            ("Every photo is blurry if you call it art.", 49),
        ],
    },
    {
        "language": "zh",
        "type": "T2T",
        "question": "闹钟为什么总是很累？",
        "responses": [
            ("因为它每天早上都要叫醒一个不想起床的人。", 35),
            ("它加班到凌晨，只为了在六点准时吵架。", 28),
            ("它的梦想是当枕头，可惜没考上。", 47),
            ("每次被按掉，它都觉得自己被拒绝了。", 41),
            ("它一天要响三次，比我上班还努力。", 22),
        ],
    },
    {
        "language": "zh",
        "type": "T2T",
        "question": "如果猫会说话，第一句会说什么？",
        "responses": [
            ("铲屎官，今天的饭为什么晚了三秒？", 52),
            ("这个家其实是我的，你只是租客。", 44),
            ("别看了，杯子是它自己跳下去的。", 39),
            ("我不是胖，我是毛多。", 30),
            ("沙发我已经帮你试过了，很好抓。", 25),
        ],
    },
    {
        "language": "zh",
        "type": "I2T",
        "image": "zh-astronaut",
        "photo": "astronaut",
        "caption": "一名穿着白色宇航服的宇航员站在旗子前面。",
        "responses": [
            ("出门前我妈说多穿点，我就穿成了这样。", 46),
            ("我只是下楼取个快递。", 38),
            ("月亮上的网速比我家还快。", 33),
            ("老板说远程办公，我理解得有点远。", 55),
            ("这身衣服防晒效果一流。", 21),
        ],
    },
    {
        "language": "zh",
        "type": "I2T",
        "image": "zh-coffee",
        "photo": "coffee",
        "caption": "碟子上放着一杯咖啡和一把勺子。",
        "responses": [
            ("这杯咖啡是我今天唯一的同事。", 42),
            ("喝完这杯，我就假装自己很清醒。", 37),
            ("勺子在这里只是为了陪伴。", 26),
            ("周一的早晨，咖啡比闹钟更有用。", 49),
            ("它苦，但没有我的工资苦。", 58),
        ],
    },
    {
        "language": "zh",
        "type": "IT2T",
        "image": "zh-moon",
        "photo": "moon",
        "band": "Moon says: ____",
        "caption": "夜空中一轮布满环形山的月亮。",
        "responses": [
            ("别拍了，今天没化妆。", 51),
            ("我每个月都要减肥一次。", 43),
            ("地球人，你们的灯太亮了。", 29),
            ("我只是晚上上班的太阳。", 34),
            ("月饼的事跟我没关系。", 40),
        ],
    },
    {
        "language": "ja",
        "type": "T2T",
        "question": "冷蔵庫が家出した理由とは？",
        "responses": [
            ("毎晩開けられて、何も取られないのが辛かった。", 38),
            ("牛乳と喧嘩して、気まずくなった。", 27),
            ("クールなキャラに疲れたから。", 45),
            ("電気代の話をされすぎた。", 33),
            ("夜中のケーキ泥棒を見てしまったから。", 50),
        ],
    },
    {
        "language": "ja",
        "type": "T2T",
        "question": "ロボットが初めて泣いた理由は？",
        "responses": [
            ("充電器を家に忘れた。", 42),
            ("人間にロボットじゃないことを証明しろと言われた。", 56),
            ("掃除機に恋をしたが、振られた。", 35),
            ("アップデートで好きな曲が消えた。", 29),
            ("涙の機能をテストしていただけ。", 23),
        ],
    },
    {
        "language": "ja",
        "type": "I2T",
        "image": "ja-cat",
        "photo": "chelsea",
        "caption": "床に座って横を見ているトラ猫。",
        "responses": [
            ("冷蔵庫の音が聞こえた瞬間の顔。", 48),
            ("花瓶は自分で落ちたんです、本当です。", 41),
            ("飼い主の言い訳を聞いている。", 30),
            ("明日の会議の議題は、ソファの所有権。", 36),
            ("レーザーポインターには興味ないふり。", 24),
        ],
    },
    {
        "language": "ja",
        "type": "IT2T",
        "image": "ja-rocket",
        "photo": "rocket",
        "band": "Why the rocket left: ____",
        "caption": "晴れた空の下、発射台に立つロケット。",
        "responses": [
            ("渋滞が嫌いだったから。", 44),
            ("家賃が高すぎた。", 39),
            ("月にいい物件を見つけた。", 52),
            ("鍵を宇宙で探すため。", 28),
            ("実家に帰るだけです。", 33),
        ],
    },
]

SAMPLE_CAPTIONS: dict[str, str] = {game["image"]: game["caption"] for game in SAMPLE_GAMES if "image" in game}

_FONT = "DejaVuSans.ttf"


def _photo(name: str, size: int) -> Image.Image:
    import skimage.data

    array = getattr(skimage.data, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    image = Image.fromarray(array.astype(np.uint8)).convert("RGB")
    image.thumbnail((size, size))
    return image


def _with_band(image: Image.Image, text: str) -> Image.Image:
    """Add a white band with ``text`` under the photo, as IT2T images carry their text with a blank."""
    band_height = max(24, image.height // 6)
    canvas = Image.new("RGB", (image.width, image.height + band_height), "white")
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.truetype(_FONT, size=band_height // 2)
    except OSError:
        font = ImageFont.load_default()
    draw.text((6, image.height + band_height // 4), text, fill="black", font=font)
    return canvas


def write_sample_dataset(root: str | Path, *, image_size: int = 128) -> Path:
    """Write the sample as ``en.jsonl``, ``cn.jsonl``, ``jp.jsonl`` and ``images/`` under ``root``.

    Also writes ``captions.json`` (image id to a plain caption), which serves as the caption distractor
    in place of BLIP-2 captions. Existing files are overwritten. Returns ``root``.
    """
    root = Path(root)
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)

    lines: dict[str, list[str]] = {language: [] for language in LANGUAGE_FILES}
    for game in SAMPLE_GAMES:
        image_id = game.get("image")
        if image_id is not None:
            image = _photo(game["photo"], image_size)
            if game["type"] == "IT2T":
                image = _with_band(image, game["band"])
            image.save(image_dir / f"{image_id}.png")
        for text, star in game["responses"]:
            record = {
                "type": game["type"],
                "question": game.get("question"),
                "image": image_id,
                "text": text,
                "star": star,
            }
            lines[game["language"]].append(json.dumps(record, ensure_ascii=False))

    for language, file_name in LANGUAGE_FILES.items():
        (root / file_name).write_text("\n".join(lines[language]) + "\n", encoding="utf-8")
    (root / "captions.json").write_text(
        json.dumps(SAMPLE_CAPTIONS, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    return root
