"""LATTICE: latent item-item structures (Zhang et al., ACM MM 2021, arXiv 2104.09036).

For each modality m, LATTICE keeps the k-nearest-neighbour graph of the raw features (``S_m``, cosine
similarity values, symmetric normalisation) and learns a second one from projected features
(``L_m``, the same construction on ``W_m x``). The item-item graph is
``A = sum_m softmax(w)_m * ((1 - lambda_coeff) * L_m + lambda_coeff * S_m)`` with learnable modality
weights ``w``. Item ID embeddings propagate ``n_layers`` times over ``A``. The L2-normalised result is added
to the item representation of a LightGCN backbone (``n_ui_layers`` layers) on the user-item graph. The
model trains with BPR plus an L2 penalty.

As in the authors' code, the learned graph is rebuilt with gradients on the first training batch of each
epoch and then reused, detached, until the next epoch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.loss import EmbLoss
from recbole.utils import InputType
from torch import nn

from mirror_gradient.models.base import (
    MultimodalRecommender,
    bpr_loss,
    knn_graph,
    light_graph_propagate,
    normalized_user_item_adjacency,
)

__all__ = ["LATTICE"]


class LATTICE(MultimodalRecommender):
    """LATTICE with a LightGCN backbone.

    Config keys: ``embedding_size``, ``feat_embed_dim``, ``knn_k``, ``lambda_coeff`` (weight of the raw
    feature graph), ``n_layers`` (item-graph layers), ``n_ui_layers`` (LightGCN layers), ``reg_weight``.
    """

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.feat_embed_dim = config["feat_embed_dim"]
        self.knn_k = config["knn_k"]
        self.lambda_coeff = config["lambda_coeff"]
        self.n_layers = config["n_layers"]
        self.n_ui_layers = config["n_ui_layers"]
        self.reg_weight = config["reg_weight"]
        if not 0.0 <= self.lambda_coeff <= 1.0:
            raise ValueError(f"lambda_coeff must be in [0, 1], got {self.lambda_coeff}; LATTICE uses 0.9.")

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        modalities = self.modality_features()
        self.modality_names = sorted(modalities)
        self.projections = nn.ModuleDict(
            {name: nn.Linear(feature.shape[1], self.feat_embed_dim) for name, feature in modalities.items()}
        )
        self.modality_weight = nn.Parameter(torch.full((len(modalities),), 1.0 / len(modalities)))
        self.reg_loss = EmbLoss()

        users, items = self.user_item_edges(dataset)
        self.adjacency = normalized_user_item_adjacency(users, items, self.n_users, self.n_items).to(
            self.device
        )
        self.raw_graphs: dict[str, torch.Tensor] = {}
        self.item_graph: torch.Tensor | None = None
        self.rebuild_learned_graph = True
        self.refresh_feature_graphs()

    def refresh_feature_graphs(self) -> None:
        self.raw_graphs = {
            name: knn_graph(feature, self.knn_k, weighted=True)
            for name, feature in self.modality_features().items()
        }
        self.rebuild_learned_graph = True

    def pre_epoch_processing(self) -> None:
        """Rebuild the learned item-item graph on the next training forward pass."""
        self.rebuild_learned_graph = True

    def _build_item_graph(self) -> torch.Tensor:
        weights = F.softmax(self.modality_weight, dim=0)
        features = self.modality_features()
        graph = None
        for weight, name in zip(weights, self.modality_names, strict=True):
            learned = knn_graph(self.projections[name](features[name]), self.knn_k, weighted=True)
            mixed = (1.0 - self.lambda_coeff) * learned + self.lambda_coeff * self.raw_graphs[name]
            graph = weight * mixed if graph is None else graph + weight * mixed
        return graph.coalesce()

    def _current_item_graph(self) -> torch.Tensor:
        if self.rebuild_learned_graph or self.item_graph is None:
            graph = self._build_item_graph()
            self.item_graph = graph.detach()
            self.rebuild_learned_graph = False
            return graph
        return self.item_graph

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        item_graph = self._current_item_graph()
        item_graph_vectors = self.item_embedding.weight
        for _ in range(self.n_layers):
            item_graph_vectors = torch.sparse.mm(item_graph, item_graph_vectors)
        nodes = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        nodes = light_graph_propagate(self.adjacency, nodes, self.n_ui_layers)
        users, items = torch.split(nodes, [self.n_users, self.n_items])
        return users, items + F.normalize(item_graph_vectors, dim=1)

    def calculate_loss(self, interaction):
        users = interaction[self.USER_ID]
        positives = interaction[self.ITEM_ID]
        negatives = interaction[self.NEG_ITEM_ID]
        user_vectors, item_vectors = self.forward()
        batch_users = user_vectors[users]
        positive_vectors, negative_vectors = item_vectors[positives], item_vectors[negatives]
        loss = bpr_loss((batch_users * positive_vectors).sum(1), (batch_users * negative_vectors).sum(1))
        return loss + self.reg_weight * self.reg_loss(batch_users, positive_vectors, negative_vectors)

    def full_sort_predict(self, interaction):
        user_vectors, item_vectors = self.cached_representations(self.forward)
        return user_vectors[interaction[self.USER_ID]] @ item_vectors.T
