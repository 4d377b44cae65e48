"""Training loop of SUR-adapter on frozen Stable Diffusion components, driven by accelerate.

Each optimizer step encodes the images with the VAE and adds DDPM noise. The frozen text encoder embeds
the simple prompt (``text``) and the complex prompt (``prompt``), and the adapter transforms the
simple-prompt embedding. The frozen UNet predicts the noise conditioned on the adapted embedding, and the
step minimises

    L = L_noise + llm_weight * KD(P v_llm, h) + prompt_weight * KD(c_complex, y).

Only the adapter (and its teacher projection ``P``) is in the optimizer.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler

from qcore.progress import progress
from qcore.rundir import RunDir
from qcore.seeding import seed_everything

from .adapter import SURAdapter, make_llm_projection
from .components import DiffusionComponents, encode_text, load_components, tokenize
from .config import TrainConfig
from .data import SURDataset, collate_records
from .embedded import write_embedded_dataset
from .losses import SURLosses, combine_losses, kd_loss, noise_prediction_loss
from .teacher import PromptVectors, cached_prompt_vectors, load_prompt_vectors

__all__ = ["SURTrainer", "TrainResult", "find_checkpoint"]

logger = logging.getLogger(__name__)

_CHECKPOINT_PREFIX = "checkpoint-"


@dataclass
class TrainResult:
    """Outcome of :meth:`SURTrainer.train`."""

    adapter_dir: Path
    global_step: int
    seconds: float
    last_losses: dict[str, float]


class SURTrainer:
    """Train a SUR-adapter.

    Args:
        config: Training configuration.
        components: Preloaded diffusion components; loaded from ``config.pretrained_model`` when ``None``.
        dataset: Training data; read from ``config.data_root`` (or written from scikit-image) when ``None``.
        teacher_vectors: Teacher vectors for every simple prompt; computed (and cached) when ``None``.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        components: DiffusionComponents | None = None,
        dataset: SURDataset | None = None,
        teacher_vectors: PromptVectors | None = None,
    ) -> None:
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.run_dir = RunDir(self.output_dir)
        seed_everything(config.seed)

        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.accelerator = Accelerator(
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            mixed_precision=config.mixed_precision,
            cpu=device == "cpu",
        )
        self.device = self.accelerator.device

        self.components = (
            components
            if components is not None
            else load_components(config.pretrained_model, seed=config.seed)
        )
        self.components.freeze()
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
            config.mixed_precision, torch.float32
        )
        self.components.to(
            self.device, dtype=None if self.weight_dtype == torch.float32 else self.weight_dtype
        )
        if config.gradient_checkpointing:
            self.components.unet.enable_gradient_checkpointing()
        if config.prediction_type is not None:
            self.components.noise_scheduler.register_to_config(prediction_type=config.prediction_type)

        self.dataset = dataset if dataset is not None else self._load_dataset()
        self.teacher_vectors = (
            teacher_vectors if teacher_vectors is not None else self._load_teacher_vectors()
        )
        missing = [prompt for prompt in self.dataset.simple_prompts if prompt not in self.teacher_vectors]
        if missing:
            raise KeyError(
                f"Teacher vectors from {self.teacher_vectors.source} lack {len(missing)} simple prompts, for example "
                f"{missing[0]!r}. Rebuild them for this metadata.jsonl with `sur-adapter cache-features`."
            )

        self.adapter = self._build_adapter()
        self.legacy_projection: torch.nn.Linear | None = None
        if config.legacy_llm_projection:
            unseeded = int.from_bytes(os.urandom(8), "little") % 2**63
            logger.info("Legacy teacher projection: frozen, not saved, random seed %d", unseeded)
            self.legacy_projection = (
                make_llm_projection(self.teacher_vectors.dim, self.components.embed_dim, seed=unseeded)
                .requires_grad_(False)
                .to(self.device)
            )

    # Setup helpers.

    def _load_dataset(self) -> SURDataset:
        if self.config.data_root is not None:
            root = Path(self.config.data_root)
        else:
            root = self.output_dir / "data"
            if not (root / "metadata.jsonl").is_file():
                write_embedded_dataset(root)
        resolution = self.config.resolution or self.components.resolution
        return SURDataset(
            root,
            resolution=resolution,
            center_crop=self.config.center_crop,
            random_flip=self.config.random_flip,
        )

    def _load_teacher_vectors(self) -> PromptVectors:
        if self.config.teacher_vectors is not None:
            return load_prompt_vectors(self.config.teacher_vectors)
        cache_dir = self.config.feature_cache_dir or self.output_dir / "teacher-cache"
        return cached_prompt_vectors(
            self.dataset.simple_prompts,
            model_id=self.config.teacher,
            layer=self.config.teacher_layer,
            pooling=self.config.teacher_pooling,
            cache_dir=cache_dir,
            batch_size=self.config.teacher_batch_size,
            device=self.device,
            dtype=torch.float16 if self.device.type == "cuda" else None,
        )

    def _build_adapter(self) -> SURAdapter:
        config = self.config
        return SURAdapter(
            self.components.embed_dim,
            llm_dim=None if config.legacy_llm_projection else self.teacher_vectors.dim,
            depth=config.depth,
            nhead=config.nhead,
            dim_feedforward=config.dim_feedforward,
            dropout=config.dropout,
            adapter_weight=config.adapter_weight,
            zero_fc_bias=config.zero_fc_bias,
            keep_value_layer=config.keep_value_layer,
            legacy_batch_first_bug=config.legacy_batch_first_bug,
            projection_seed=config.seed,
        ).to(self.device)

    # Loss.

    def compute_losses(
        self,
        batch: dict,
        *,
        generator: torch.Generator | None = None,
        adapter: SURAdapter | None = None,
        use_adapter: bool = True,
    ) -> SURLosses:
        """Compute the three loss terms and their weighted sum for one batch.

        Args:
            batch: Output of :func:`collate_records`.
            generator: Source of the VAE sample, noise and timesteps (the global generator when ``None``).
            adapter: Adapter to use; ``self.adapter`` when ``None``.
            use_adapter: ``False`` conditions the UNet on the plain text-encoder output (the baseline);
                ``L_prompt`` then compares it with the complex prompt and ``L_llm`` is NaN.
        """
        adapter = adapter if adapter is not None else self.adapter
        components = self.components
        scheduler = components.noise_scheduler
        pixels = batch["pixel_values"].to(self.device, dtype=self.weight_dtype)
        batch_size = pixels.shape[0]

        with torch.no_grad():
            latent_dist = components.vae.encode(pixels).latent_dist
            latents = (
                latent_dist.sample(generator=_on_device(generator, pixels.device))
                * components.vae.config.scaling_factor
            )
            simple_ids = tokenize(components.tokenizer, batch["text"]).to(self.device)
            complex_ids = tokenize(components.tokenizer, batch["prompt"]).to(self.device)
            simple_embeds = components.text_encoder(simple_ids)[0].float()
            complex_embeds = components.text_encoder(complex_ids)[0].float()

        noise = torch.randn(
            latents.shape, generator=generator, device="cpu" if generator is not None else latents.device
        )
        noise = noise.to(latents.device, latents.dtype)
        if self.config.noise_offset:
            offset = torch.randn(
                (batch_size, latents.shape[1], 1, 1),
                generator=generator,
                device="cpu" if generator is not None else latents.device,
            )
            noise = noise + self.config.noise_offset * offset.to(latents.device, latents.dtype)
        timesteps = torch.randint(
            0,
            scheduler.config.num_train_timesteps,
            (batch_size,),
            generator=generator,
            device="cpu" if generator is not None else latents.device,
        ).to(latents.device)
        noisy_latents = scheduler.add_noise(latents, noise, timesteps)

        if use_adapter:
            adapted = adapter(simple_embeds)
            condition = adapted.embeds
        else:
            condition = simple_embeds
        if use_adapter and self.config.legacy_detach_condition:
            # The authors copy the condition with torch.tensor(), which cuts it from the graph.
            condition = condition.detach()
        model_pred = components.unet(noisy_latents, timesteps, condition.to(self.weight_dtype)).sample

        if scheduler.config.prediction_type == "epsilon":
            target = noise
        elif scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            raise ValueError(
                f"Unsupported prediction type {scheduler.config.prediction_type!r}; use 'epsilon' or 'v_prediction'."
            )
        noise_loss = noise_prediction_loss(
            model_pred,
            target,
            timesteps=timesteps,
            noise_scheduler=scheduler,
            snr_gamma=self.config.snr_gamma,
        )

        if not use_adapter:
            prompt_loss = kd_loss(complex_embeds, simple_embeds)
            llm_loss = torch.full_like(prompt_loss, float("nan"))
            return SURLosses(total=noise_loss, noise=noise_loss, llm=llm_loss, prompt=prompt_loss)
        teacher = self.teacher_vectors.lookup(batch["text"]).to(self.device)
        if self.legacy_projection is not None:
            projected = self.legacy_projection(teacher).unsqueeze(1)
        else:
            projected = adapter.project_llm(teacher)
        llm_loss = kd_loss(projected, adapted.transformer_states)
        prompt_loss = kd_loss(complex_embeds, adapted.embeds)
        return combine_losses(
            noise_loss,
            llm_loss,
            prompt_loss,
            llm_weight=self.config.llm_weight,
            prompt_weight=self.config.prompt_weight,
        )

    @torch.no_grad()
    def evaluate(
        self,
        *,
        use_adapter: bool = True,
        repeats: int = 4,
        batch_size: int = 8,
        max_samples: int | None = None,
    ) -> dict[str, float]:
        """Average the loss terms and embedding distances over the whole dataset with fixed noise.

        Every call draws the same VAE samples, noise and timesteps (from ``config.seed``), so values from
        before and after training, or with and without the adapter, are comparable. Random flips are
        part of the dataset transform and vary between calls.

        Returns:
            ``loss``, ``loss_noise``, ``loss_llm``, ``loss_prompt`` (unweighted terms), and
            ``simple_complex_distance``: the mean over samples and tokens of the L2 distance between the
            conditioning embedding of the simple prompt and the text-encoder embedding of the complex prompt.
            With ``max_samples`` only the first samples of the dataset are used.
        """
        adapter = self.accelerator.unwrap_model(self.adapter)
        was_training = adapter.training
        adapter.eval()
        totals: dict[str, float] = {"loss": 0.0, "loss_noise": 0.0, "loss_llm": 0.0, "loss_prompt": 0.0}
        distance_sum, count = 0.0, 0
        batch_index = 0
        for _ in range(repeats):
            num_samples = len(self.dataset) if max_samples is None else min(max_samples, len(self.dataset))
            for start in range(0, num_samples, batch_size):
                indices = range(start, min(start + batch_size, num_samples))
                batch = collate_records([self.dataset[index] for index in indices])
                generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + 7 + batch_index)
                losses = self.compute_losses(
                    batch, generator=generator, adapter=adapter, use_adapter=use_adapter
                )
                weight = len(indices)
                for key, value in zip(totals, losses, strict=True):
                    totals[key] += float(value) * weight
                distance_sum += (
                    float(self._simple_complex_distance(batch, adapter if use_adapter else None)) * weight
                )
                count += weight
                batch_index += 1
        adapter.train(was_training)
        results = {key: value / count for key, value in totals.items()}
        results["simple_complex_distance"] = distance_sum / count
        return results

    def _simple_complex_distance(self, batch: dict, adapter: SURAdapter | None) -> torch.Tensor:
        simple = encode_text(self.components, batch["text"]).float()
        complex_embeds = encode_text(self.components, batch["prompt"]).float()
        condition = adapter(simple).embeds if adapter is not None else simple
        return (condition - complex_embeds).norm(dim=-1).mean()

    # Training.

    def train(self) -> TrainResult:
        """Run the training loop, resuming when ``config.resume_from_checkpoint`` is set."""
        config = self.config
        accelerator = self.accelerator
        self.run_dir.save_config(config)

        optimizer = torch.optim.AdamW(
            [parameter for parameter in self.adapter.parameters() if parameter.requires_grad],
            lr=config.learning_rate,
            betas=(config.adam_beta1, config.adam_beta2),
            weight_decay=config.weight_decay,
            eps=config.adam_epsilon,
        )
        lr_scheduler = get_scheduler(
            config.lr_scheduler,
            optimizer=optimizer,
            num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=config.max_train_steps * accelerator.num_processes,
        )
        adapter, optimizer, lr_scheduler = accelerator.prepare(self.adapter, optimizer, lr_scheduler)

        global_step = 0
        checkpoint = find_checkpoint(self.output_dir, config.resume_from_checkpoint)
        if checkpoint is not None:
            accelerator.load_state(str(checkpoint))
            global_step = int(checkpoint.name.removeprefix(_CHECKPOINT_PREFIX))
            self.run_dir.truncate_metrics(global_step)
            logger.info("Resumed from %s at step %d", checkpoint, global_step)

        micro_batches = _micro_batch_order(len(self.dataset), config.train_batch_size, config.seed)
        start = time.perf_counter()
        last: dict[str, float] = {}
        sums = {"loss": 0.0, "loss_noise": 0.0, "loss_llm": 0.0, "loss_prompt": 0.0}
        adapter.train()

        bar = progress(
            range(global_step, config.max_train_steps),
            desc="sur-adapter",
            total=config.max_train_steps - global_step,
        )
        for step in bar:
            for micro in range(config.gradient_accumulation_steps):
                micro_index = step * config.gradient_accumulation_steps + micro
                indices = micro_batches(micro_index)
                batch = collate_records([self.dataset[index] for index in indices])
                generator = torch.Generator().manual_seed(config.seed * 1_000_003 + micro_index)
                with accelerator.accumulate(adapter), accelerator.autocast():
                    losses = self.compute_losses(
                        batch, generator=generator, adapter=accelerator.unwrap_model(adapter)
                    )
                    accelerator.backward(losses.total)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(adapter.parameters(), config.max_grad_norm)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                for key, value in zip(sums, losses, strict=True):
                    sums[key] += float(value.detach()) / config.gradient_accumulation_steps

            global_step = step + 1
            last = dict(sums)
            self.run_dir.log_metrics(global_step, **last, lr=lr_scheduler.get_last_lr()[0])
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            sums = dict.fromkeys(sums, 0.0)

            if global_step % config.checkpointing_steps == 0 or global_step == config.max_train_steps:
                self._save_checkpoint(global_step)
            if config.validation_steps and global_step % config.validation_steps == 0:
                self.save_validation_images(global_step)

        adapter_dir = self.output_dir / "adapter"
        accelerator.unwrap_model(adapter).save_pretrained(adapter_dir)
        seconds = time.perf_counter() - start
        logger.info(
            "Training finished at step %d in %.1f s; adapter saved to %s", global_step, seconds, adapter_dir
        )
        return TrainResult(
            adapter_dir=adapter_dir, global_step=global_step, seconds=seconds, last_losses=last
        )

    def _save_checkpoint(self, global_step: int) -> Path:
        checkpoints = self.output_dir / "checkpoints"
        target = checkpoints / f"{_CHECKPOINT_PREFIX}{global_step}"
        temporary = checkpoints / f".{target.name}.tmp"
        shutil.rmtree(temporary, ignore_errors=True)
        self.accelerator.save_state(str(temporary))
        self.accelerator.unwrap_model(self.adapter).save_pretrained(temporary / "adapter")
        shutil.rmtree(target, ignore_errors=True)
        temporary.replace(target)
        limit = self.config.checkpoints_total_limit
        if limit is not None:
            existing = sorted(_list_checkpoints(checkpoints), key=_checkpoint_step)
            for old in existing[: max(len(existing) - limit, 0)]:
                shutil.rmtree(old)
        logger.info("Saved checkpoint %s", target)
        return target

    @torch.no_grad()
    def save_validation_images(self, global_step: int, prompts: Sequence[str] | None = None) -> Path:
        """Generate one image per validation prompt with and without the adapter and save a grid.

        Rows are prompts; the left column has no adapter and the right column uses it.
        """
        from .pipeline import SURStableDiffusionPipeline
        from .visualize import image_grid

        prompts = list(prompts or self.config.validation_prompts or self.dataset.simple_prompts[:4])
        adapter = self.accelerator.unwrap_model(self.adapter)
        was_training = adapter.training
        images = []
        for use_adapter in (False, True):
            pipe = SURStableDiffusionPipeline(
                vae=self.components.vae,
                text_encoder=self.components.text_encoder,
                tokenizer=self.components.tokenizer,
                unet=self.components.unet,
                scheduler=self.components.inference_scheduler(),
                adapter=adapter if use_adapter else None,
            )
            pipe.set_progress_bar_config(disable=True)
            generator = torch.Generator().manual_seed(self.config.seed)
            resolution = self.config.resolution or self.components.resolution
            output = pipe(
                prompts,
                num_inference_steps=self.config.validation_inference_steps,
                guidance_scale=self.config.guidance_scale,
                height=resolution,
                width=resolution,
                generator=generator,
            )
            images.append(output.images)
        adapter.train(was_training)
        path = self.output_dir / "validation" / f"step-{global_step:06d}.png"
        image_grid([[plain, adapted] for plain, adapted in zip(*images, strict=True)]).save(
            _make_parent(path)
        )
        logger.info("Saved validation images to %s", path)
        return path


def find_checkpoint(output_dir: str | Path, resume_from: str | None) -> Path | None:
    """Resolve ``resume_from`` (``None``, ``"latest"`` or a folder) to a checkpoint folder.

    ``"latest"`` with no checkpoint yet returns ``None`` and training starts from scratch.
    """
    if resume_from is None:
        return None
    if resume_from == "latest":
        existing = _list_checkpoints(Path(output_dir) / "checkpoints")
        if not existing:
            logger.info("No checkpoint under %s; starting from scratch", Path(output_dir) / "checkpoints")
            return None
        return max(existing, key=_checkpoint_step)
    path = Path(resume_from)
    if not path.is_dir() or not path.name.startswith(_CHECKPOINT_PREFIX):
        raise FileNotFoundError(
            f"Checkpoint folder not found: {path}. Pass 'latest' or a '{_CHECKPOINT_PREFIX}<step>' folder "
            "written by an earlier run."
        )
    return path


def _list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [
        path
        for path in folder.iterdir()
        if path.is_dir()
        and path.name.startswith(_CHECKPOINT_PREFIX)
        and path.name.removeprefix(_CHECKPOINT_PREFIX).isdigit()
    ]


def _checkpoint_step(path: Path) -> int:
    return int(path.name.removeprefix(_CHECKPOINT_PREFIX))


def _micro_batch_order(num_samples: int, batch_size: int, seed: int):
    """Return a function from a micro-batch index to its sample indices.

    Every epoch is a fresh permutation drawn from ``seed`` and the epoch number, so the order does not
    depend on where a run was resumed. The last incomplete batch of an epoch is dropped unless the data is
    smaller than one batch.
    """
    batch_size = min(batch_size, num_samples)
    per_epoch = num_samples // batch_size

    def indices(micro_index: int) -> list[int]:
        epoch, position = divmod(micro_index, per_epoch)
        order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        return order[position * batch_size : (position + 1) * batch_size].tolist()

    return indices


def _on_device(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """Return a generator usable on ``device``, derived from a CPU ``generator``."""
    if generator is None or device.type == "cpu":
        return generator
    derived = torch.Generator(device=device)
    derived.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
    return derived


def _make_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
