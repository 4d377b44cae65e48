"""FREEDOM: freezing and denoising graph structures (Zhou and Shen, ACM MM 2023, arXiv 2211.06924).

* A frozen item-item graph: for each modality, the k-nearest-neighbour graph of raw features (cosine
  similarity, kept entries set to 1, symmetric normalisation), mixed as
  ``mm_image_weight * image graph + (1 - mm_image_weight) * text graph``. It is built once from the
  features and never trained.
* A denoised user-item graph: every epoch, ``dropout`` of the training edges are pruned, sampling the kept
  edges with probability proportional to ``1 / sqrt(deg(u) * deg(i))`` (degree-sensitive pruning).
  Evaluation uses the full graph.
* Item ID embeddings propagate ``n_mm_layers`` times over the item-item graph. Users and items propagate
  ``n_ui_layers`` LightGCN layers over the user-item graph. An item's representation is the sum of both.
* Loss: BPR on the representations plus ``reg_weight`` times BPR losses that score projected image and text
  features against the user representation.
"""

from __future__ import annotations

import torch
from recbole.utils import InputType
from torch import nn

from mirror_gradient.models.base import (
    MultimodalRecommender,
    bpr_loss,
    knn_graph,
    light_graph_propagate,
    normalized_user_item_adjacency,
)

__all__ = ["FREEDOM"]


class FREEDOM(MultimodalRecommender):
    """FREEDOM.

    Config keys: ``embedding_size``, ``feat_embed_dim``, ``knn_k``, ``mm_image_weight``, ``n_mm_layers``,
    ``n_ui_layers``, ``dropout`` (share of user-item edges pruned each epoch), ``reg_weight``.
    """

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.feat_embed_dim = config["feat_embed_dim"]
        self.knn_k = config["knn_k"]
        self.mm_image_weight = config["mm_image_weight"]
        self.n_mm_layers = config["n_mm_layers"]
        self.n_ui_layers = config["n_ui_layers"]
        self.dropout = config["dropout"]
        self.reg_weight = config["reg_weight"]
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}; FREEDOM's grid is 0.8 and 0.9.")
        if self.feat_embed_dim != self.embedding_size:
            raise ValueError(
                f"feat_embed_dim ({self.feat_embed_dim}) must equal embedding_size ({self.embedding_size}), "
                "because projected features are scored against user embeddings."
            )

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.projections = nn.ModuleDict(
            {
                name: nn.Linear(feature.shape[1], self.feat_embed_dim)
                for name, feature in self.modality_features().items()
            }
        )

        users, items = self.user_item_edges(dataset)
        self.edge_users, self.edge_items = users.to(self.device), items.to(self.device)
        degree_users = torch.bincount(users, minlength=self.n_users).float()
        degree_items = torch.bincount(items, minlength=self.n_items).float()
        self.edge_weights = (degree_users[users] * degree_items[items]).pow(-0.5).to(self.device)
        self.full_adjacency = normalized_user_item_adjacency(
            self.edge_users, self.edge_items, self.n_users, self.n_items
        )
        self.train_adjacency = self.full_adjacency
        self.item_graph = None
        self.refresh_feature_graphs()

    def refresh_feature_graphs(self) -> None:
        graphs = {
            name: knn_graph(feature, self.knn_k, weighted=False)
            for name, feature in self.modality_features().items()
        }
        if len(graphs) == 2:
            self.item_graph = (
                self.mm_image_weight * graphs["image"] + (1.0 - self.mm_image_weight) * graphs["text"]
            ).coalesce()
        else:
            self.item_graph = next(iter(graphs.values()))

    def pre_epoch_processing(self) -> None:
        """Prune ``dropout`` of the user-item edges with degree-sensitive sampling for this epoch."""
        if self.dropout <= 0.0:
            self.train_adjacency = self.full_adjacency
            return
        keep = int(len(self.edge_weights) * (1.0 - self.dropout))
        kept_edges = torch.multinomial(self.edge_weights, keep, replacement=False)
        self.train_adjacency = normalized_user_item_adjacency(
            self.edge_users[kept_edges], self.edge_items[kept_edges], self.n_users, self.n_items
        )

    def forward(self, adjacency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        item_graph_vectors = self.item_embedding.weight
        for _ in range(self.n_mm_layers):
            item_graph_vectors = torch.sparse.mm(self.item_graph, item_graph_vectors)
        nodes = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        nodes = light_graph_propagate(adjacency, nodes, self.n_ui_layers)
        users, items = torch.split(nodes, [self.n_users, self.n_items])
        return users, items + item_graph_vectors

    def calculate_loss(self, interaction):
        users = interaction[self.USER_ID]
        positives = interaction[self.ITEM_ID]
        negatives = interaction[self.NEG_ITEM_ID]
        user_vectors, item_vectors = self.forward(self.train_adjacency)
        batch_users = user_vectors[users]
        loss = bpr_loss(
            (batch_users * item_vectors[positives]).sum(1), (batch_users * item_vectors[negatives]).sum(1)
        )
        for name, feature in self.modality_features().items():
            projected = self.projections[name](feature)
            loss = loss + self.reg_weight * bpr_loss(
                (batch_users * projected[positives]).sum(1), (batch_users * projected[negatives]).sum(1)
            )
        return loss

    def full_sort_predict(self, interaction):
        user_vectors, item_vectors = self.cached_representations(lambda: self.forward(self.full_adjacency))
        return user_vectors[interaction[self.USER_ID]] @ item_vectors.T
