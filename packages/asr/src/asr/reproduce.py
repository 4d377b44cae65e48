"""Reproduction entry point of ``asr``: plain, SE, ASR and ASR + SE, accuracy before and after folding.

Also trains an SE network once more with a `asr.stripe.StripeObserver` attached and adds the Stripe
Observation (gate variance across inputs against across channels, and the heat-map) to the report.
"""

from __future__ import annotations

import logging

import torch

from asr.deploy import evaluate_before_and_after_folding
from asr.stripe import StripeObserver
from qcore.report import markdown_table
from qcore.reproduce import ReproductionContext, ReproductionResult, ResultRow
from qcore.seeding import seed_everything
from qcore.vision.data import CIFAR_HOW_TO_GET, build_datasets
from qcore.vision.reproduction import PRESET_RECIPES, Variant, run_attention_reproduction
from qcore.vision.resnet import create_cifar_resnet
from qcore.vision.train import TrainConfig, train_classifier

__all__ = ["REFERENCES", "reproduce"]

logger = logging.getLogger(__name__)

_README = "zhongshsh/ASR README (ResNet-164, CIFAR-100, best top-1 over epochs)"
REFERENCES = [
    ResultRow(model="ResNet-164 (published)", role="reference", metrics={"best_acc": 74.10}, notes=_README),
    ResultRow(
        model="ResNet-164 + SE (published)", role="reference", metrics={"best_acc": 75.03}, notes=_README
    ),
    ResultRow(
        model="ResNet-164 + ASR(SE) (published)", role="reference", metrics={"best_acc": 75.21}, notes=_README
    ),
    ResultRow(
        model="ResNet-164 + ASR(SE) + SE (published)",
        role="reference",
        metrics={"best_acc": 76.23},
        notes=_README,
    ),
]

# Probe images and recording interval of the Stripe Observation run, per preset.
_STRIPE_PROBE = {"smoke": 8, "default": 32, "paper": 64}
_STRIPE_EVERY = {"smoke": 1, "default": 10, "paper": 500}


def _stripe_section(context: ReproductionContext, config: TrainConfig) -> tuple[str, list]:
    """Train an SE network with a StripeObserver and return the report section and figure paths."""
    recipe = PRESET_RECIPES[context.preset]
    seed_everything(config.seed)
    train_set, _, num_classes = build_datasets(
        config.dataset, root=config.data_root, image_size=config.image_size, augment=False, seed=config.seed
    )
    probe = torch.stack([train_set[index][0] for index in range(_STRIPE_PROBE[context.preset])])
    model = create_cifar_resnet(recipe.model, num_classes=num_classes, attn_layer="se")
    observer = StripeObserver(model, probe, every=_STRIPE_EVERY[context.preset])
    observer.observe(0)
    run_dir = context.run_dir.subdir("stripe_observation")
    train_classifier(model, config, run_dir, resume=False, step_callback=observer.observe)

    summary = observer.summary()
    run_dir.write_json("stripe_summary.json", summary)
    first, last = observer.steps()[0], observer.steps()[-1]
    table = []
    for module in observer.modules:
        start = next(r for r in summary if r["module"] == module and r["step"] == first)
        end = next(r for r in summary if r["module"] == module and r["step"] == last)
        table.append(
            {
                "module": module,
                f"var_inputs@{first}": start["across_input_variance"],
                f"var_channels@{first}": start["across_channel_variance"],
                f"var_inputs@{last}": end["across_input_variance"],
                f"var_channels@{last}": end["across_channel_variance"],
            }
        )
    figure = observer.plot(context.run_dir.figure_path("stripe_observation.png"))
    text = "\n".join(
        [
            f"#### Stripe Observation ({recipe.model} + SE, {len(probe)} fixed training images, steps {first} and {last})",
            "",
            "Variance of the SE gates across inputs (averaged over channels) beside the variance across "
            "channels (averaged over inputs). Stripes form when the first is much smaller than the second.",
            "",
            markdown_table(table),
            "",
            f"![stripe heat-map]({figure.relative_to(context.run_dir.path).as_posix()})",
        ]
    )
    return text, [figure]


def reproduce(context: ReproductionContext) -> ReproductionResult:
    """Train plain, SE, ASR and ASR + SE with the same seeds and report accuracy before and after folding."""
    import asr  # noqa: F401  (registers "asr" and "asr_se")

    result = run_attention_reproduction(
        context,
        package="asr",
        variants={
            "plain": None,
            "se": "se",
            "asr": Variant(attn_layer="asr", after_training=evaluate_before_and_after_folding),
            "asr_se": Variant(attn_layer="asr_se", after_training=evaluate_before_and_after_folding),
        },
        paper_dataset="cifar100",
        references=REFERENCES,
        notes=(
            "asr and asr_se rows: params and FLOPs are those of the training form. folded_acc is the test "
            "accuracy of the final model after folding every ASR scale into its BatchNorm, folded_params its "
            "parameter count (equal to plain for asr and to se for asr_se)."
        ),
    )

    recipe = PRESET_RECIPES[context.preset]
    settings = dict(recipe.train)
    dataset, data_root = recipe.dataset, None
    if context.preset == "paper":
        # Our choice: the stripes form early, so the observation run stops after 20 epochs at lr 0.1.
        settings.update(epochs=20, milestones=())
        dataset = "cifar100"
        data_root = str(context.require_data("cifar-100-python", CIFAR_HOW_TO_GET))
    config = TrainConfig(
        dataset=dataset,
        data_root=data_root,
        seed=context.seeds[0],
        device="cuda" if context.device == "cuda" else "cpu",
        **settings,
    )
    stripe_text, stripe_figures = _stripe_section(context, config)
    result.report_markdown = result.report_markdown + "\n\n" + stripe_text
    result.figures = [*result.figures, *stripe_figures]
    context.run_dir.write_report(result.report_markdown)
    return result
