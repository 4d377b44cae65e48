"""A small synthetic multimodal dataset in the MMRec layout, for tests and the smoke preset.

Users and items have latent factors; a user interacts with the items whose factors score highest, plus a
few random items. Image and text features are noisy linear maps of the item factors, so content carries
signal that a multimodal model can use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mirror_gradient.data import IMAGE_FEATURE_FILE, TEXT_FEATURE_FILE
from mirror_gradient.embedded import split_per_user

__all__ = ["write_synthetic_mmrec"]


def write_synthetic_mmrec(
    folder: str | Path,
    name: str = "synthetic",
    *,
    n_users: int = 60,
    n_items: int = 80,
    per_user: int = 12,
    image_dim: int = 16,
    text_dim: int = 12,
    seed: int = 0,
) -> Path:
    """Write ``<folder>/<name>/`` with ``<name>.inter``, ``image_feat.npy`` and ``text_feat.npy``.

    Row ``r`` of each feature file is item ``r``. Returns the dataset folder.
    """
    rng = np.random.default_rng(seed)
    factors = 4
    user_factors = rng.normal(size=(n_users, factors))
    item_factors = rng.normal(size=(n_items, factors))
    scores = user_factors @ item_factors.T + 0.5 * rng.normal(size=(n_users, n_items))
    top = np.argsort(-scores, axis=1)[:, :per_user]
    users = np.repeat(np.arange(n_users), per_user)
    items = top.reshape(-1)
    frame = pd.DataFrame({"userID": users, "itemID": items, "rating": 1, "timestamp": np.arange(len(users))})
    frame["x_label"] = split_per_user(frame["userID"].to_numpy(), rng)

    target = Path(folder) / name
    target.mkdir(parents=True, exist_ok=True)
    frame.to_csv(target / f"{name}.inter", sep="\t", index=False)
    image = item_factors @ rng.normal(size=(factors, image_dim)) + 0.1 * rng.normal(size=(n_items, image_dim))
    text = item_factors @ rng.normal(size=(factors, text_dim)) + 0.1 * rng.normal(size=(n_items, text_dim))
    np.save(target / IMAGE_FEATURE_FILE, image.astype(np.float32))
    np.save(target / TEXT_FEATURE_FILE, text.astype(np.float32))
    return target
