"""The adapter that runs the built-in policy: normalisation, tokenisation, queues and capture."""

from __future__ import annotations

from pathlib import Path

from salus.policies.builtin.modeling_builtin import (
    BuiltinFlowPolicy,
    BuiltinProcessor,
    NormalizationStats,
    load_pretrained,
)
from salus.policies.generic import TorchPolicyAdapter

__all__ = ["BuiltinPolicyAdapter", "load_builtin", "DEFAULT_WEIGHTS_DIR"]

# The weights shipped in the package (written by `salus policy train --out` on the fixed recipe).
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class BuiltinPolicyAdapter(TorchPolicyAdapter):
    """The built-in policy in a control loop.

    Captures the input and output of ``action_out_proj`` at each of the ``num_steps`` denoising steps
    and the ``trunk`` output (observation embedding, E = ``config.embed_dim``).
    """

    def __init__(
        self,
        model: BuiltinFlowPolicy,
        stats: NormalizationStats,
        *,
        n_action_steps: int | None = None,
        num_samples: int = 1,
        capture_internals: bool = True,
        seed: int = 0,
        device: str = "cpu",
    ):
        config = model.config
        self.processor = BuiltinProcessor(config, stats)
        super().__init__(
            model,
            output_layer="action_out_proj",
            embedding_layer="trunk",
            chunk_size=config.chunk_size,
            n_action_steps=config.n_action_steps if n_action_steps is None else n_action_steps,
            action_dim=config.action_dim,
            preprocess=self.processor.preprocess,
            postprocess=self.processor.postprocess,
            validate=self.processor.validate,
            num_samples=num_samples,
            capture_internals=capture_internals,
            seed=seed,
            device=device,
        )
        self.config = config

    @classmethod
    def from_pretrained(cls, directory: str | Path | None = None, **kwargs: object) -> BuiltinPolicyAdapter:
        model, stats = load_pretrained(DEFAULT_WEIGHTS_DIR if directory is None else directory)
        return cls(model, stats, **kwargs)  # type: ignore[arg-type]


def load_builtin(path: str | None = None, **kwargs: object) -> BuiltinPolicyAdapter:
    """Loader for the ``builtin`` / ``builtin:DIR`` policy specs."""
    return BuiltinPolicyAdapter.from_pretrained(path or None, **kwargs)
