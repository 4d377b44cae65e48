"""Shared parts of the multimodal recommenders: feature loading and graph construction.

RecBole 1.2.1 has no multimodal models and does not read ``.npy`` features, so every model here loads the
item features itself from ``mm_feature_dir`` (``vision_feature_file`` and ``text_feature_file``, MMRec's
names) and aligns their rows with RecBole's internal item IDs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender

from mirror_gradient import compat as _compat  # noqa: F401  (applies the RecBole fixes)
from mirror_gradient.data import IMAGE_FEATURE_FILE, TEXT_FEATURE_FILE, align_item_features

__all__ = [
    "MultimodalRecommender",
    "bpr_loss",
    "knn_graph",
    "light_graph_propagate",
    "normalized_user_item_adjacency",
]

logger = logging.getLogger(__name__)


def bpr_loss(positive_scores: torch.Tensor, negative_scores: torch.Tensor) -> torch.Tensor:
    """Return the Bayesian personalised ranking loss ``-mean(log sigmoid(pos - neg))``."""
    return -F.logsigmoid(positive_scores - negative_scores).mean()


def normalized_user_item_adjacency(
    users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int
) -> torch.Tensor:
    """Build ``D^-1/2 A D^-1/2`` of the bipartite user-item graph as a sparse COO tensor.

    Args:
        users: user index of each edge, shape ``(E,)``.
        items: item index of each edge, shape ``(E,)``.
        n_users: number of user nodes (nodes ``0 .. n_users-1``).
        n_items: number of item nodes (nodes ``n_users .. n_users+n_items-1``).

    Returns:
        Sparse tensor ``(n_users + n_items, n_users + n_items)``.
    """
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    size = n_users + n_items
    degree = torch.bincount(rows, minlength=size).float()
    inv_sqrt = degree.pow(-0.5)
    inv_sqrt[torch.isinf(inv_sqrt)] = 0.0
    values = inv_sqrt[rows] * inv_sqrt[cols]
    return torch.sparse_coo_tensor(
        torch.stack([rows, cols]), values, (size, size), check_invariants=False
    ).coalesce()


def light_graph_propagate(adjacency: torch.Tensor, embeddings: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Average the embeddings of LightGCN layers 0..n_layers: ``mean_k A^k E``."""
    layers = [embeddings]
    for _ in range(n_layers):
        layers.append(torch.sparse.mm(adjacency, layers[-1]))
    return torch.stack(layers).mean(dim=0)


def knn_graph(features: torch.Tensor, k: int, *, weighted: bool, chunk_size: int = 4096) -> torch.Tensor:
    """Build the symmetric-normalised k-nearest-neighbour item graph from cosine similarity.

    Each row keeps its ``k`` most similar items (itself included). ``weighted=True`` keeps the similarity
    values (LATTICE), ``weighted=False`` sets kept entries to 1 (FREEDOM). The result is ``D^-1/2 S D^-1/2``
    with D the row sums of S. Gradients flow through the kept similarity values when ``weighted`` is True.

    Args:
        features: ``(n_items, dim)``.
        k: neighbours per item.
        weighted: whether kept entries carry the similarity value.
        chunk_size: rows of the similarity matrix computed at once, which bounds memory.

    Returns:
        Sparse COO tensor ``(n_items, n_items)``.
    """
    n_items = features.shape[0]
    k = min(k, n_items)
    normalized = F.normalize(features, dim=1)
    values, columns = [], []
    for start in range(0, n_items, chunk_size):
        similarity = normalized[start : start + chunk_size] @ normalized.T
        top_values, top_columns = similarity.topk(k, dim=1)
        values.append(top_values if weighted else torch.ones_like(top_values))
        columns.append(top_columns)
    values_flat = torch.cat(values).reshape(-1)
    columns_flat = torch.cat(columns).reshape(-1)
    rows_flat = torch.arange(n_items, device=features.device).repeat_interleave(k)
    row_sum = torch.zeros(n_items, device=features.device, dtype=values_flat.dtype)
    row_sum = row_sum.index_add(0, rows_flat, values_flat)
    inv_sqrt = row_sum.clamp_min(1e-12).pow(-0.5)
    inv_sqrt = torch.where(row_sum > 0, inv_sqrt, torch.zeros_like(inv_sqrt))
    normalized_values = inv_sqrt[rows_flat] * values_flat * inv_sqrt[columns_flat]
    return torch.sparse_coo_tensor(
        torch.stack([rows_flat, columns_flat]), normalized_values, (n_items, n_items), check_invariants=False
    ).coalesce()


def _load_feature_file(config: Any, key: str, default_name: str, id_tokens: np.ndarray) -> np.ndarray | None:
    folder = config["mm_feature_dir"]
    if folder is None:
        raise ValueError(
            "The configuration key mm_feature_dir is missing; set it to the folder that contains "
            f"{IMAGE_FEATURE_FILE} and {TEXT_FEATURE_FILE} (MMRec layout)."
        )
    name = config[key] or default_name
    path = Path(folder) / name
    if not path.is_file():
        return None
    return align_item_features(np.load(path), id_tokens, source=str(path))


class MultimodalRecommender(GeneralRecommender):
    """RecBole ``GeneralRecommender`` that owns aligned image and text features.

    ``self.v_feat`` and ``self.t_feat`` are float tensors ``(n_items, dim)`` (row ``i`` belongs to internal
    item ``i``, row 0 is padding and zero), or None for a modality whose file is absent. They are
    non-persistent buffers, so checkpoints stay small and are rebuilt from ``mm_feature_dir``.
    """

    def __init__(self, config: Any, dataset: Any) -> None:
        super().__init__(config, dataset)
        id_tokens = dataset.field2id_token[self.ITEM_ID]
        image = _load_feature_file(config, "vision_feature_file", IMAGE_FEATURE_FILE, id_tokens)
        text = _load_feature_file(config, "text_feature_file", TEXT_FEATURE_FILE, id_tokens)
        if image is None and text is None:
            raise FileNotFoundError(
                f"Neither {IMAGE_FEATURE_FILE} nor {TEXT_FEATURE_FILE} was found in {config['mm_feature_dir']}; "
                "a multimodal recommender needs at least one feature file."
            )
        self.register_buffer("v_feat", None if image is None else torch.from_numpy(image), persistent=False)
        self.register_buffer("t_feat", None if text is None else torch.from_numpy(text), persistent=False)
        self.v_feat = None if image is None else self.v_feat.to(self.device)
        self.t_feat = None if text is None else self.t_feat.to(self.device)

    def train(self, mode: bool = True):
        self._prediction_cache = None
        return super().train(mode)

    def cached_representations(self, compute):
        """Return ``compute()`` computed once per evaluation; training mode or new features clear the cache."""
        if self.training:
            return compute()
        if getattr(self, "_prediction_cache", None) is None:
            with torch.no_grad():
                self._prediction_cache = compute()
        return self._prediction_cache

    def modality_features(self) -> dict[str, torch.Tensor]:
        """Return the present modalities by name (``"image"``, ``"text"``)."""
        present = {}
        if self.v_feat is not None:
            present["image"] = self.v_feat
        if self.t_feat is not None:
            present["text"] = self.t_feat
        return present

    def set_item_features(
        self, *, image: torch.Tensor | None = None, text: torch.Tensor | None = None
    ) -> None:
        """Replace item features, for example with perturbed ones at test time, and refresh derived graphs.

        Args:
            image: new image features ``(n_items, image_dim)``, or None to keep the current ones.
            text: new text features ``(n_items, text_dim)``, or None to keep the current ones.
        """
        for name, new, current in (("image", image, self.v_feat), ("text", text, self.t_feat)):
            if new is None:
                continue
            if current is None or new.shape != current.shape:
                shape = None if current is None else tuple(current.shape)
                raise ValueError(f"New {name} features have shape {tuple(new.shape)}; expected {shape}.")
        if image is not None:
            self.v_feat = image.to(self.device, torch.float32)
        if text is not None:
            self.t_feat = text.to(self.device, torch.float32)
        self._prediction_cache = None
        self.refresh_feature_graphs()

    def refresh_feature_graphs(self) -> None:
        """Rebuild structures computed from raw features (item-item graphs); models override this."""

    def user_item_edges(self, dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the training interactions as (users, items) index tensors."""
        matrix = dataset.inter_matrix(form="coo").astype(np.float32)
        return torch.from_numpy(matrix.row).long(), torch.from_numpy(matrix.col).long()

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        items = interaction[self.ITEM_ID]
        return scores.view(len(items), -1).gather(1, items.unsqueeze(1)).squeeze(1)
