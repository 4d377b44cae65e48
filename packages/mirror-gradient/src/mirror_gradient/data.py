"""Multimodal datasets in the MMRec layout, read into RecBole with their fixed split.

An MMRec dataset folder ``<root>/<name>/`` contains:

* ``<name>.inter``: tab-separated with a header, columns ``userID``, ``itemID`` and ``x_label`` (0 train,
  1 validation, 2 test) and optionally ``rating`` and ``timestamp``. IDs are 0-based integers.
* ``image_feat.npy`` and ``text_feat.npy``: float arrays whose row ``r`` belongs to item ``r``.

RecBole re-maps IDs to 1-based integers (0 is padding). :func:`convert_mmrec_to_recbole` writes the split as
RecBole benchmark files, and :func:`align_item_features` reorders feature rows so that row ``i`` belongs to
RecBole's internal item ``i``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "IMAGE_FEATURE_FILE",
    "SPLIT_NAMES",
    "TEXT_FEATURE_FILE",
    "align_item_features",
    "convert_mmrec_to_recbole",
    "read_mmrec_interactions",
    "recbole_dataset_config",
]

logger = logging.getLogger(__name__)

IMAGE_FEATURE_FILE = "image_feat.npy"
TEXT_FEATURE_FILE = "text_feat.npy"
SPLIT_NAMES = ("train", "valid", "test")
USER_FIELD = "userID"
ITEM_FIELD = "itemID"
_REQUIRED_COLUMNS = (USER_FIELD, ITEM_FIELD, "x_label")


def read_mmrec_interactions(folder: str | Path, name: str) -> pd.DataFrame:
    """Read ``<folder>/<name>.inter`` and check its columns and split labels.

    Returns:
        A frame with integer columns ``userID``, ``itemID`` and ``x_label``.
    """
    path = Path(folder) / f"{name}.inter"
    if not path.is_file():
        raise FileNotFoundError(
            f"MMRec interaction file not found: {path}. Expected a tab-separated file with the columns "
            "userID, itemID and x_label (0 train, 1 valid, 2 test)."
        )
    frame = pd.read_csv(path, sep="\t")
    missing = [column for column in _REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{path} lacks the columns {missing}; found {list(frame.columns)}. MMRec files need "
            "userID, itemID and x_label."
        )
    frame = frame[list(_REQUIRED_COLUMNS)].astype("int64")
    bad_labels = sorted(set(frame["x_label"].unique()) - {0, 1, 2})
    if bad_labels:
        raise ValueError(
            f"{path} has x_label values {bad_labels}; only 0 (train), 1 (valid), 2 (test) are valid."
        )
    if (frame[[USER_FIELD, ITEM_FIELD]] < 0).any().any():
        raise ValueError(f"{path} contains negative user or item IDs; MMRec IDs are 0-based integers.")
    return frame


def convert_mmrec_to_recbole(source: str | Path, name: str, output_root: str | Path) -> Path:
    """Write an MMRec dataset as RecBole benchmark files ``<name>.train/valid/test.inter``.

    Validation and test interactions of users without training interactions are dropped, as MMRec's
    ``filter_out_cod_start_users`` does. Files are rewritten only when their content changes.

    Args:
        source: the MMRec folder containing ``<name>.inter``.
        name: the dataset name.
        output_root: RecBole's ``data_path``; the files go to ``output_root/name/``.

    Returns:
        The folder that contains the benchmark files.
    """
    frame = read_mmrec_interactions(source, name)
    train_users = set(frame.loc[frame["x_label"] == 0, USER_FIELD])
    if not train_users:
        raise ValueError(f"{Path(source) / (name + '.inter')} has no training interactions (x_label 0).")
    held_out = frame["x_label"] > 0
    cold = held_out & ~frame[USER_FIELD].isin(train_users)
    if cold.any():
        logger.info(
            "Dropping %d validation/test interactions of users absent from training.", int(cold.sum())
        )
    frame = frame[~cold]

    target = Path(output_root) / name
    target.mkdir(parents=True, exist_ok=True)
    header = f"{USER_FIELD}:token\t{ITEM_FIELD}:token\n"
    for label, split in enumerate(SPLIT_NAMES):
        rows = frame.loc[frame["x_label"] == label, [USER_FIELD, ITEM_FIELD]]
        text = header + "".join(f"{user}\t{item}\n" for user, item in rows.itertuples(index=False))
        path = target / f"{name}.{split}.inter"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    return target


def recbole_dataset_config(name: str, data_path: str | Path, feature_dir: str | Path) -> dict[str, Any]:
    """Return the RecBole configuration keys that load a converted MMRec dataset with its fixed split."""
    return {
        "dataset": name,
        "data_path": str(data_path),
        "USER_ID_FIELD": USER_FIELD,
        "ITEM_ID_FIELD": ITEM_FIELD,
        "RATING_FIELD": None,
        "TIME_FIELD": None,
        "load_col": {"inter": [USER_FIELD, ITEM_FIELD]},
        "benchmark_filename": list(SPLIT_NAMES),
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "mm_feature_dir": str(feature_dir),
        "vision_feature_file": IMAGE_FEATURE_FILE,
        "text_feature_file": TEXT_FEATURE_FILE,
    }


def align_item_features(
    features: np.ndarray, id_tokens: np.ndarray, *, source: str = "features"
) -> np.ndarray:
    """Reorder raw feature rows so that row ``i`` belongs to RecBole's internal item ``i``.

    Args:
        features: array ``(n_raw_items, dim)`` whose row ``r`` is raw item ``r``.
        id_tokens: ``dataset.field2id_token[item_field]``: entry ``i`` is the raw ID (a string) of internal
            item ``i``; entry 0 is ``"[PAD]"``.
        source: name of the feature file, used in error messages.

    Returns:
        float32 array ``(len(id_tokens), dim)`` with zeros in row 0.
    """
    if features.ndim != 2:
        raise ValueError(f"{source} must be a 2-D array (items, dim), got shape {features.shape}.")
    raw_ids = np.asarray([int(token) for token in id_tokens[1:]], dtype=np.int64)
    if raw_ids.size and raw_ids.max() >= features.shape[0]:
        raise ValueError(
            f"{source} has {features.shape[0]} rows but the interactions use item ID {int(raw_ids.max())}; "
            "row r of a feature file must belong to item r."
        )
    aligned = np.zeros((len(id_tokens), features.shape[1]), dtype=np.float32)
    aligned[1:] = features[raw_ids]
    return aligned
