"""MoExtend: new experts added to a frozen mixture-of-experts LLM for a new modality.

Implements "MoExtend: Tuning New Experts for Modality and Task Extension" (Zhong et al., arXiv 2408.03511)
on Hugging Face transformers models (Mixtral, Qwen3-MoE, OLMoE).
"""

from moextend.block import ExtendedSparseMoeBlock, RoutingCalibration
from moextend.extend import ExtensionPlan, extend_model, find_moe_layers
from moextend.model import MoExtendModel
from moextend.selection import count_expert_usage, select_layers, usage_shift

__all__ = [
    "ExtendedSparseMoeBlock",
    "ExtensionPlan",
    "MoExtendModel",
    "RoutingCalibration",
    "count_expert_usage",
    "extend_model",
    "find_moe_layers",
    "select_layers",
    "usage_shift",
]

__version__ = "0.1.0"
