"""ASR: attention-alike structural re-parameterization, an inference cost-free channel attention.

Implements "Stripe Observation Guided Inference Cost-free Attention Mechanism" (Huang, Zhong, Wen, Qin, Lin),
ECCV 2024, arXiv 2304.06345. Importing the package registers ``"asr"`` (ASR with an inner SE) and
``"asr_se"`` (ASR followed by an ordinary SE) in ``qcore.vision.attention.ATTENTION``.
"""

from asr.asr import ASR, DEFAULT_INIT_VALUE, ASRBatchNorm2d, ASRWithAttention, build_attention
from asr.reparameterize import count_asr_modules, install_asr_batchnorm, reparameterize
from asr.stripe import GateRecord, StripeObserver, plot_stripes
from qcore.vision.attention import ATTENTION

__all__ = [
    "ASR",
    "DEFAULT_INIT_VALUE",
    "ASRBatchNorm2d",
    "ASRWithAttention",
    "GateRecord",
    "StripeObserver",
    "build_attention",
    "count_asr_modules",
    "install_asr_batchnorm",
    "plot_stripes",
    "reparameterize",
]

for _name, _module in (("asr", ASR), ("asr_se", ASRWithAttention)):
    if _name not in ATTENTION:
        ATTENTION.add(_name, _module)
