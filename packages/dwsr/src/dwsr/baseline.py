"""Single-way baseline of the same parameter count as a DWSR network.

The baseline is BasicSR's own ``EDSR`` with the same feature width as the DWSR ways and as many residual
blocks as bring its parameter count closest to the whole DWSR network (both ways and the recognition
network).
"""

from __future__ import annotations

from basicsr.archs.edsr_arch import EDSR

from dwsr.archs.dwsr_arch import DWSRNet

__all__ = ["count_parameters", "matched_single_way_options"]


def count_parameters(module) -> int:
    """Count the distinct parameters of ``module`` (shared tensors count once)."""
    return sum(parameter.numel() for parameter in module.parameters())


def _edsr_parameters(num_feat: int, num_block: int, upscale: int, num_in_ch: int, num_out_ch: int) -> int:
    network = EDSR(num_in_ch, num_out_ch, num_feat=num_feat, num_block=num_block, upscale=upscale)
    return count_parameters(network)


def matched_single_way_options(dwsr_options: dict) -> dict:
    """Return ``network_g`` options of an ``EDSR`` whose parameter count is closest to ``DWSRNet``'s.

    Args:
        dwsr_options: The ``network_g`` options of a ``DWSRNet`` (with or without ``type``).
    """
    kwargs = {key: value for key, value in dwsr_options.items() if key != "type"}
    target = count_parameters(DWSRNet(**kwargs))
    num_feat = int(kwargs.get("num_feat", 64))
    upscale = int(kwargs.get("upscale", 4))
    num_in_ch = int(kwargs.get("num_in_ch", 3))
    num_out_ch = int(kwargs.get("num_out_ch", 3))
    empty = _edsr_parameters(num_feat, 0, upscale, num_in_ch, num_out_ch)
    per_block = _edsr_parameters(num_feat, 1, upscale, num_in_ch, num_out_ch) - empty
    num_block = max(1, round((target - empty) / per_block))
    options = {
        "type": "EDSR",
        "num_in_ch": num_in_ch,
        "num_out_ch": num_out_ch,
        "num_feat": num_feat,
        "num_block": num_block,
        "upscale": upscale,
    }
    for key in ("res_scale", "img_range", "rgb_mean"):
        if key in kwargs:
            options[key] = kwargs[key]
    return options
