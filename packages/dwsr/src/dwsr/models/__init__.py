"""BasicSR model classes of DWSR, registered in ``basicsr.utils.registry.MODEL_REGISTRY`` on import."""

from dwsr.models.dwsr_model import DWSRModel, compute_label_mask
from dwsr.models.stages import TrainingStage, parse_stages, scale_stage_iters

__all__ = ["DWSRModel", "TrainingStage", "compute_label_mask", "parse_stages", "scale_stage_iters"]
