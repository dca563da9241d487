"""Build a tiny, randomly initialised LeRobot ``SmolVLAPolicy`` checkpoint offline.

The real ``lerobot/smolvla_base`` needs the model hub (SmolVLM2-500M weights and tokenizer). For
tests, benchmarks and CI we build the same classes from a local folder instead:

``OUT/vlm/``
    a SmolVLM config with tiny hidden sizes and few layers, a word-level tokenizer trained with
    the ``tokenizers`` package on robot-instruction text, and the SmolVLM image/video processors,
    so ``AutoConfig``/``AutoTokenizer``/``AutoProcessor.from_pretrained(OUT/vlm)`` work offline.
``OUT/``
    ``config.json`` + ``model.safetensors`` (``SmolVLAPolicy.save_pretrained``) and the LeRobot
    pre/post-processor pipelines (``policy_preprocessor.json``, ``policy_postprocessor.json`` and
    their normalisation statistics as safetensors), exactly the layout of a hub checkpoint.

The weights are random (seeded): the policy is not trained, it only exercises the real code paths.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from salus.errors import InvalidInputError
from salus.policies.smolvla.configuration_smolvla import (
    DEFAULT_IMAGE_KEYS,
    DEFAULT_STATE_KEY,
)

__all__ = ["build_tiny_smolvla", "build_vlm_folder", "TINY_VLM_DIRNAME"]

TINY_VLM_DIRNAME = "vlm"

# Special tokens the SmolVLM processor and LeRobot's VLAFlowMatching look up on the tokenizer.
_SPECIAL_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
    "video_token": "<video>",
}

_CORPUS = [
    "pick up the cube and place it on the target",
    "pick the red cube and put it in the bin",
    "push the block to the goal region",
    "open the drawer",
    "close the drawer",
    "stack the blue block on the red block",
    "lift the cube above the table",
    "move the gripper to the left",
    "move the gripper to the right",
    "reach the green sphere",
    "insert the peg into the hole",
    "slide the puck to the target",
    "grasp the object and lift it",
    "place the object in the box",
    "turn the knob",
    "press the button",
]


def _build_tokenizer(vlm_dir: Path, texts: Sequence[str] = ()) -> int:
    """Train a word-level tokenizer on ``_CORPUS`` + ``texts``, save it as a HF tokenizer folder; returns its size."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", *_SPECIAL_TOKENS.values()]
    trainer = trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1)
    tok.train_from_iterator([*_CORPUS, *texts], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        extra_special_tokens=dict(_SPECIAL_TOKENS),
        model_max_length=512,
    )
    fast.save_pretrained(vlm_dir)
    return len(fast)


def build_vlm_folder(
    vlm_dir: Path,
    *,
    image_size: int,
    hidden_size: int,
    num_layers: int,
    vision_layers: int = 1,
    patch_size: int | None = None,
    texts: Sequence[str] = (),
) -> None:
    """Write a small SmolVLM config, tokenizer and processor into ``vlm_dir``.

    ``num_layers`` text layers and ``vision_layers`` vision layers of width ``hidden_size``;
    ``image_size / patch_size`` patches per side (default 4), ``(side / 2) ** 2`` image tokens per
    camera after the pixel-shuffle connector; ``texts`` are added to the tokenizer's corpus.
    """
    from transformers import AutoTokenizer, SmolVLMConfig, SmolVLMProcessor
    from transformers.models.smolvlm.image_processing_smolvlm import SmolVLMImageProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    patch_size = image_size // 4 if patch_size is None else int(patch_size)
    side = image_size // patch_size if patch_size > 0 else 0
    if patch_size < 1 or image_size % patch_size or side % 2:
        raise InvalidInputError(
            f"image_size ({image_size}) must be an even multiple of patch_size ({patch_size}): the "
            "pixel-shuffle connector merges 2x2 patches"
        )
    if vision_layers < 1 or num_layers < 1:
        raise InvalidInputError(
            f"num_layers and vision_layers must be >= 1, got {num_layers}, {vision_layers}"
        )
    vlm_dir.mkdir(parents=True, exist_ok=True)
    vocab_size = _build_tokenizer(vlm_dir, texts)
    tokenizer = AutoTokenizer.from_pretrained(vlm_dir)
    head_dim = 16
    heads = max(hidden_size // head_dim, 2)
    config = SmolVLMConfig(
        text_config={
            "model_type": "llama",
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": heads,
            "num_key_value_heads": max(heads // 2, 1),
            "head_dim": head_dim,
            "vocab_size": vocab_size,
            "max_position_embeddings": 512,
            "rms_norm_eps": 1e-5,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": vision_layers,
            "num_attention_heads": heads,
            "image_size": image_size,
            "patch_size": patch_size,
        },
        scale_factor=2,
        vocab_size=vocab_size,
        image_token_id=tokenizer.convert_tokens_to_ids(_SPECIAL_TOKENS["image_token"]),
        pad_token_id=tokenizer.pad_token_id,
    )
    config.save_pretrained(vlm_dir)
    size = {"longest_edge": image_size}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(size=size, max_image_size=size),
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(size=size, max_image_size=size),
        image_seq_len=(side // 2) ** 2,
    )
    processor.save_pretrained(vlm_dir)


def build_tiny_smolvla(
    out_dir: str | Path,
    *,
    state_dim: int = 22,
    action_dim: int = 4,
    chunk_size: int = 10,
    n_action_steps: int = 5,
    num_steps: int = 4,
    image_size: int = 32,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Build a tiny random SmolVLA checkpoint (policy + processors + local VLM folder) into ``out_dir``.

    The input features are the salus simulator's cameras (``observation.images.front``,
    ``observation.images.wrist``, 3xHxW) and state (``observation.state``, ``state_dim``); the
    action is ``action_dim`` wide. Returns ``out_dir``; load it with ``SmolVLAAdapter.from_pretrained``.
    """
    for name, value in {
        "state_dim": state_dim,
        "action_dim": action_dim,
        "chunk_size": chunk_size,
        "n_action_steps": n_action_steps,
        "num_steps": num_steps,
        "num_layers": num_layers,
    }.items():
        if value < 1:
            raise InvalidInputError(f"{name} must be >= 1, got {value}")
    if n_action_steps > chunk_size:
        raise InvalidInputError(f"n_action_steps ({n_action_steps}) must be <= chunk_size ({chunk_size})")
    if image_size % 8 or hidden_size % 16:
        raise InvalidInputError(
            f"image_size must be a multiple of 8 and hidden_size of 16; got {image_size}, {hidden_size}"
        )

    from salus.policies.smolvla._compat import import_lerobot_smolvla

    lr = import_lerobot_smolvla()
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vlm_dir = out / TINY_VLM_DIRNAME
    build_vlm_folder(vlm_dir, image_size=image_size, hidden_size=hidden_size, num_layers=num_layers)

    ft, pf, nm = lr.FeatureType, lr.PolicyFeature, lr.NormalizationMode
    input_features = {
        key: pf(type=ft.VISUAL, shape=(3, image_size, image_size)) for key in DEFAULT_IMAGE_KEYS.values()
    }
    input_features[DEFAULT_STATE_KEY] = pf(type=ft.STATE, shape=(state_dim,))
    output_features = {"action": pf(type=ft.ACTION, shape=(action_dim,))}
    config = lr.SmolVLAConfig(
        input_features=input_features,
        output_features=output_features,
        chunk_size=chunk_size,
        n_action_steps=n_action_steps,
        num_steps=num_steps,
        vlm_model_name=str(vlm_dir.resolve()),
        load_vlm_weights=False,
        num_vlm_layers=num_layers,
        resize_imgs_with_padding=(image_size, image_size),
        tokenizer_max_length=16,
        max_state_dim=max(32, state_dim),
        max_action_dim=max(32, action_dim),
        device="cpu",
        push_to_hub=False,
        normalization_mapping={"VISUAL": nm.IDENTITY, "STATE": nm.MEAN_STD, "ACTION": nm.MEAN_STD},
    )
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(sys.stderr):  # LeRobot print()s while building the model
        policy = lr.SmolVLAPolicy(config)
    # Stand-in dataset statistics: the simulator's state is roughly unit scale, actions are in [-1, 1].
    stats = {
        DEFAULT_STATE_KEY: {"mean": torch.zeros(state_dim), "std": torch.ones(state_dim)},
        "action": {"mean": torch.zeros(action_dim), "std": torch.full((action_dim,), 0.5)},
    }
    pre, post = lr.make_smolvla_pre_post_processors(config, dataset_stats=stats)
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out
