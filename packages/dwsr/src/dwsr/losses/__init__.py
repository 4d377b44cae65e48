"""BasicSR losses of DWSR, registered in ``basicsr.utils.registry.LOSS_REGISTRY`` on import."""

from dwsr.losses.mask_loss import DWSRMaskBCELoss

__all__ = ["DWSRMaskBCELoss"]
