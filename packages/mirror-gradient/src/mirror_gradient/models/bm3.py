"""BM3: bootstrapped multimodal model (Zhou et al., WWW 2023, arXiv 2207.05969).

BM3 needs no negative sampling. Users and items get LightGCN representations over the user-item graph;
each modality is projected to the same width. A shared linear predictor maps each online representation,
and the target is a dropout-perturbed, gradient-stopped copy of the online representation. With
``C(a, b) = 1 - cos(a, b)`` averaged over the batch, the loss is

* reconstruction: ``C(p(h_u), sg(drop(h_i))) + C(p(h_i), sg(drop(h_u)))``;
* inter-modality alignment: ``sum_m C(p(h_i^m), sg(drop(h_i)))``;
* intra-modality masking: ``sum_m C(p(h_i^m), sg(drop(h_i^m)))``;

``loss = reconstruction + cl_weight * (alignment + masking) + reg_weight * (||h_u||^2 + ||h_i||^2) / 2``,
and the score of a user-item pair is ``p(h_u) . p(h_i)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.utils import InputType
from torch import nn

from mirror_gradient.models.base import (
    MultimodalRecommender,
    light_graph_propagate,
    normalized_user_item_adjacency,
)

__all__ = ["BM3"]


def _cosine_distance(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


class BM3(MultimodalRecommender):
    """BM3.

    Config keys: ``embedding_size``, ``feat_embed_dim`` (must equal ``embedding_size``), ``n_layers``
    (LightGCN layers), ``dropout`` (target perturbation), ``reg_weight``, ``cl_weight``. Train with
    ``train_neg_sample_args: ~`` (no negatives).
    """

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.feat_embed_dim = config["feat_embed_dim"]
        self.n_layers = config["n_layers"]
        self.dropout = config["dropout"]
        self.reg_weight = config["reg_weight"]
        self.cl_weight = config["cl_weight"]
        if self.feat_embed_dim != self.embedding_size:
            raise ValueError(
                f"feat_embed_dim ({self.feat_embed_dim}) must equal embedding_size ({self.embedding_size}) "
                "because modality projections are aligned with item embeddings."
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
        for projection in self.projections.values():
            nn.init.xavier_normal_(projection.weight)
        self.predictor = nn.Linear(self.embedding_size, self.embedding_size)
        nn.init.xavier_normal_(self.predictor.weight)

        users, items = self.user_item_edges(dataset)
        self.adjacency = normalized_user_item_adjacency(users, items, self.n_users, self.n_items).to(
            self.device
        )

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        nodes = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        nodes = light_graph_propagate(self.adjacency, nodes, self.n_layers)
        users, items = torch.split(nodes, [self.n_users, self.n_items])
        return users, items

    def calculate_loss(self, interaction):
        users = interaction[self.USER_ID]
        items = interaction[self.ITEM_ID]
        user_all, item_all = self.forward()
        user_online, item_online = user_all[users], item_all[items]
        with torch.no_grad():
            user_target = F.dropout(user_online.detach(), self.dropout, training=self.training)
            item_target = F.dropout(item_online.detach(), self.dropout, training=self.training)

        loss = _cosine_distance(self.predictor(user_online), item_target)
        loss = loss + _cosine_distance(self.predictor(item_online), user_target)
        for name, feature in self.modality_features().items():
            modality_online = self.projections[name](feature[items])
            modality_prediction = self.predictor(modality_online)
            modality_target = F.dropout(modality_online.detach(), self.dropout, training=self.training)
            loss = loss + self.cl_weight * _cosine_distance(modality_prediction, item_target)
            loss = loss + self.cl_weight * _cosine_distance(modality_prediction, modality_target)

        regularisation = (user_online.pow(2).sum(1).mean() + item_online.pow(2).sum(1).mean()) / 2
        return loss + self.reg_weight * regularisation

    def full_sort_predict(self, interaction):
        def predicted_representations():
            user_all, item_all = self.forward()
            return self.predictor(user_all), self.predictor(item_all)

        user_all, item_all = self.cached_representations(predicted_representations)
        return user_all[interaction[self.USER_ID]] @ item_all.T
