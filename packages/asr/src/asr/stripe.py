"""Stripe Observation: record channel-attention gates over a fixed probe batch during training.

The ASR paper ("Stripe Observation Guided Inference Cost-free Attention Mechanism", arXiv 2304.06345)
observes that the gates of SE-like modules become nearly constant across inputs as training goes on. On
an inputs × channels heat-map the gates then form vertical stripes. `StripeObserver` measures this on any
model: forward hooks capture the gate of every attention module for a fixed probe batch every
``every`` steps, and `StripeObserver.summary` reports, per module and recorded step, the variance across
inputs (small when stripes form) beside the variance across channels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from asr.asr import ASR, gate_method

__all__ = ["GateRecord", "StripeObserver", "default_attention_filter", "plot_stripes"]

logger = logging.getLogger(__name__)


def default_attention_filter(name: str, module: nn.Module) -> bool:
    """Select modules with a ``gate(x)`` method or timm's SE-like classes (``SEModule``, ``EcaModule``...)."""
    if gate_method(module) is not None:
        return True
    return type(module).__name__ in {"SEModule", "SqueezeExcite", "EffectiveSEModule", "EcaModule"}


def _gate_from_output(inputs: Tensor, output: Tensor) -> Tensor:
    """Return the per-channel gate a with output ≈ a ⊙ input, by least squares over H and W, shape (B, C).

    The estimate is exact when the module multiplies each channel by one value and the channel is not all
    zeros. Channels whose input is all zeros get NaN.
    """
    numerator = (inputs * output).sum(dim=(2, 3))
    denominator = (inputs * inputs).sum(dim=(2, 3))
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-30), torch.nan)


@dataclass
class GateRecord:
    """Gates of one attention module at one training step.

    Attributes:
        step: training step at which the gates were recorded.
        module: qualified name of the attention module.
        gates: (N, C) tensor, the gate of each probe input (rows) and channel (columns).
    """

    step: int
    module: str
    gates: Tensor

    @property
    def across_input_variance(self) -> float:
        """Variance over inputs, averaged over channels. It is near 0 when the gates form vertical stripes."""
        return float(self.gates.var(dim=0, unbiased=False).nanmean())

    @property
    def across_channel_variance(self) -> float:
        """Variance over channels, averaged over inputs."""
        return float(self.gates.var(dim=1, unbiased=False).nanmean())


class StripeObserver:
    """Record the gates of a model's attention modules over a probe batch every ``every`` training steps.

    Call `observe` after each optimiser step of your own training loop. It records at step 0 and at
    every multiple of ``every``. Recording runs the model in eval mode without gradients on the probe
    batch and then restores the previous mode, so it does not change parameters or BatchNorm statistics.

    Args:
        model: the network.
        probe: fixed input batch (N, ...), moved to the device of the model's parameters when recording.
        every: record every this many steps.
        module_filter: ``(name, module) -> bool`` choosing the attention modules. Defaults to
            `default_attention_filter`.
        use_gate_method: compute the gate with the module's ``gate(x)`` when it has one. Otherwise, or for
            modules without it, the gate is estimated from the module's input and output.
    """

    def __init__(
        self,
        model: nn.Module,
        probe: Tensor,
        *,
        every: int = 100,
        module_filter: Callable[[str, nn.Module], bool] = default_attention_filter,
        use_gate_method: bool = True,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every!r}")
        if probe.dim() < 1 or probe.shape[0] < 2:
            raise ValueError(
                f"the probe batch needs at least 2 inputs to measure variance across inputs, "
                f"got shape {tuple(probe.shape)}"
            )
        self.model = model
        self.probe = probe
        self.every = every
        self.use_gate_method = use_gate_method
        # The inner module of an ASR scale only ever receives the constant ψ, so it has no per-input gates.
        asr_prefixes = tuple(name + "." for name, module in model.named_modules() if isinstance(module, ASR))
        self.modules = {
            name: module
            for name, module in model.named_modules()
            if name and not name.startswith(asr_prefixes) and module_filter(name, module)
        }
        if not self.modules:
            raise ValueError(
                f"found no attention module in {type(model).__name__}. Pass module_filter to choose them"
            )
        self.records: list[GateRecord] = []

    def observe(self, step: int) -> bool:
        """Record the gates if ``step`` is 0 or a multiple of ``every``, and return whether it recorded."""
        if step % self.every != 0:
            return False
        self.record(step)
        return True

    def record(self, step: int) -> list[GateRecord]:
        """Run the probe batch once and store the gate of every observed module."""
        captured: dict[str, Tensor] = {}
        handles = []
        for name, module in self.modules.items():
            handles.append(module.register_forward_hook(self._make_hook(name, captured)))
        was_training = self.model.training
        parameter = next(self.model.parameters(), None)
        probe = self.probe if parameter is None else self.probe.to(parameter.device)
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(probe)
        finally:
            self.model.train(was_training)
            for handle in handles:
                handle.remove()

        new_records = [
            GateRecord(step, name, gates.detach().float().cpu()) for name, gates in captured.items()
        ]
        self.records.extend(new_records)
        logger.debug("recorded gates of %d modules at step %d", len(new_records), step)
        return new_records

    def _make_hook(self, name: str, captured: dict[str, Tensor]) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            inputs = args[0]
            method = gate_method(module)
            if self.use_gate_method and method is not None:
                gates = method(inputs).reshape(inputs.shape[0], -1)
            else:
                gates = _gate_from_output(inputs, output)
            captured[name] = gates

        return hook

    def steps(self) -> list[int]:
        """Return the recorded steps in order."""
        return sorted({record.step for record in self.records})

    def summary(self) -> list[dict[str, float | int | str]]:
        """Return one row per (step, module): across-input and across-channel variance and their ratio."""
        rows: list[dict[str, float | int | str]] = []
        for record in self.records:
            input_variance = record.across_input_variance
            channel_variance = record.across_channel_variance
            rows.append(
                {
                    "step": record.step,
                    "module": record.module,
                    "across_input_variance": input_variance,
                    "across_channel_variance": channel_variance,
                    "input_to_channel_ratio": input_variance / channel_variance
                    if channel_variance > 0
                    else float("nan"),
                }
            )
        return rows

    def gates(self, module: str, step: int) -> Tensor:
        """Return the (N, C) gates of ``module`` recorded at ``step``."""
        for record in self.records:
            if record.module == module and record.step == step:
                return record.gates
        raise KeyError(f"no gates of module '{module}' at step {step}. Recorded steps: {self.steps()}")

    def plot(
        self, path: str | Path, *, modules: Iterable[str] | None = None, steps: Iterable[int] | None = None
    ) -> Path:
        """Draw the inputs × channels heat-maps (see `plot_stripes`) and return the file path."""
        return plot_stripes(self, path, modules=modules, steps=steps)


def plot_stripes(
    observer: StripeObserver,
    path: str | Path,
    *,
    modules: Iterable[str] | None = None,
    steps: Iterable[int] | None = None,
    max_modules: int = 4,
) -> Path:
    """Draw a grid of gate heat-maps, one row per module and one column per step, inputs × channels.

    By default the first, middle and last recorded steps and up to ``max_modules`` modules spread over
    the network are shown. Vertical stripes mean the gate of a channel barely depends on the input.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recorded_steps = observer.steps()
    if not recorded_steps:
        raise ValueError("the observer has no records yet. Call observe(step) during training first")
    if steps is None:
        steps = sorted({recorded_steps[0], recorded_steps[len(recorded_steps) // 2], recorded_steps[-1]})
    steps = list(steps)
    names = list(observer.modules)
    if modules is None:
        if len(names) > max_modules:
            indices = torch.linspace(0, len(names) - 1, max_modules).round().long().tolist()
            names = [names[index] for index in indices]
        modules = names
    modules = list(modules)

    figure, axes = plt.subplots(
        len(modules),
        len(steps),
        figsize=(3.2 * len(steps), 2.8 * len(modules)),
        squeeze=False,
        layout="constrained",
    )
    for row, module in enumerate(modules):
        for column, step in enumerate(steps):
            axis = axes[row][column]
            image = axis.imshow(
                observer.gates(module, step).numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1
            )
            axis.set_title(f"{module}\nstep {step}", fontsize=7)
            axis.set_xlabel("channel", fontsize=7)
            axis.set_ylabel("input", fontsize=7)
            axis.tick_params(labelsize=6)
    figure.colorbar(image, ax=axes, shrink=0.6, label="gate")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
