"""VBPR: Visual Bayesian Personalized Ranking (He and McAuley, AAAI 2016, arXiv 1510.01784).

An item is the concatenation of a free ID embedding and a linear projection of its content features. A
user has one embedding of the same total width. The score is their inner product, trained with the BPR
loss. As in MMRec's multimodal version, image and text features are concatenated before the projection,
and the bias terms of the original paper are left out.
"""

from __future__ import annotations

import torch
from recbole.model.init import xavier_normal_initialization
from recbole.model.loss import EmbLoss
from recbole.utils import InputType
from torch import nn

from mirror_gradient.models.base import MultimodalRecommender, bpr_loss

__all__ = ["VBPR"]


class VBPR(MultimodalRecommender):
    """VBPR on image and text features.

    Config keys: ``embedding_size`` (width d of the ID part and of the content part), ``reg_weight``
    (weight of the L2 penalty on the batch's embeddings).
    """

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.reg_weight = config["reg_weight"]
        content = torch.cat(list(self.modality_features().values()), dim=1)
        self.register_buffer("content", content, persistent=False)
        self.user_embedding = nn.Embedding(self.n_users, 2 * self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.content_projection = nn.Linear(content.shape[1], self.embedding_size)
        self.reg_loss = EmbLoss()
        self.apply(xavier_normal_initialization)

    def refresh_feature_graphs(self) -> None:
        self.content = torch.cat(list(self.modality_features().values()), dim=1)

    def item_representations(self) -> torch.Tensor:
        """Return ``(n_items, 2d)``: ID embedding next to the projected content."""
        return torch.cat([self.item_embedding.weight, self.content_projection(self.content)], dim=1)

    def calculate_loss(self, interaction):
        users = interaction[self.USER_ID]
        positives = interaction[self.ITEM_ID]
        negatives = interaction[self.NEG_ITEM_ID]
        items = self.item_representations()
        user_vectors = self.user_embedding(users)
        positive_vectors, negative_vectors = items[positives], items[negatives]
        positive_scores = (user_vectors * positive_vectors).sum(dim=1)
        negative_scores = (user_vectors * negative_vectors).sum(dim=1)
        regularisation = self.reg_loss(user_vectors, positive_vectors, negative_vectors)
        return bpr_loss(positive_scores, negative_scores) + self.reg_weight * regularisation

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID]
        return self.user_embedding(users) @ self.cached_representations(self.item_representations).T
