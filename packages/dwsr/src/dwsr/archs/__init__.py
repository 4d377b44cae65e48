"""BasicSR architectures of DWSR, registered in ``basicsr.utils.registry.ARCH_REGISTRY`` on import."""

from dwsr.archs.dwsr_arch import DWSRNet, DWSROutput, fuse_ways
from dwsr.archs.recognition_arch import DWSRRecognitionNet

__all__ = ["DWSRNet", "DWSROutput", "DWSRRecognitionNet", "fuse_ways"]
