"""Typed configuration: one dataclass tree, loaded from and saved to YAML.

Every default lives here, once. YAML files in ``config/`` only override; an
unknown key or a value of the wrong type is a :class:`ConfigError` naming the
file, the key and the problem, so a typo never silently trains the wrong model.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from moadepth_core.errors import ConfigError

# NYU Depth V2 scene types (the 27 of the labelled set), used as CLIP prompts.
NYU_SCENES: tuple[str, ...] = (
    "basement", "bathroom", "bedroom", "bookstore", "cafe", "classroom", "computer lab",
    "conference room", "dinette", "dining room", "exercise room", "foyer", "furniture store",
    "home office", "home storage", "indoor balcony", "kitchen", "laundry room", "living room",
    "office", "office kitchen", "playroom", "printer room", "reception room", "student lounge",
    "study", "study room",
)


@dataclass
class ModelConfig:
    """MoA-DepthCLIP architecture. The fixed parts follow the paper; the open ones are documented."""

    backbone: str = "ViT-B-32"  # OpenCLIP architecture name
    pretrained: str = "openai"  # hub tag, path to a local weights file, or "none" (random init: tests)
    quick_gelu: bool = True  # OpenAI's CLIP weights were trained with QuickGELU
    init_seed: int = 0  # seeds random init, so a "none" backbone is rebuilt identically from a checkpoint
    image_size: list[int] = field(default_factory=lambda: [224, 224])  # network input (H, W), multiples of 32
    tuned_blocks: list[int] = field(default_factory=lambda: [8, 9, 10, 11])  # fine-tuned ViT blocks
    adapter_blocks: list[int] = field(default_factory=lambda: [2, 5, 8, 11])  # MoA after these blocks (0-based)
    num_experts: int = 4  # K
    expert_hidden: int = 64  # bottleneck width of each expert
    gate_hidden: int = 128  # hidden width of the gate MLP
    gate_temperature: float = 2.0  # softmax temperature tau of the gate
    scene_prompts: list[str] = field(default_factory=lambda: list(NYU_SCENES))
    prompt_template: str = "a photo of a {}"
    use_context: bool = True  # concatenate the prompt-derived scene vector before the heads
    decoder_channels: int = 64  # width of the light multi-scale decoder
    num_bins: int = 128  # N depth bins
    bin_spacing: Literal["log", "uniform"] = "log"  # log: constant relative resolution (open in the paper)
    min_depth: float = 0.1  # lower edge of the first bin, metres
    max_depth: float = 10.0  # upper edge of the last bin, metres (NYU cap)
    fusion: Literal["learned", "mean", "bins", "regression"] = "learned"  # how bins and regression combine

    def validate(self) -> None:
        h, w = self.image_size
        if len(self.image_size) != 2 or h % 32 or w % 32 or h <= 0 or w <= 0:
            raise ConfigError(f"model.image_size must be two positive multiples of 32, got {self.image_size}")
        if not 0 < self.min_depth < self.max_depth:
            raise ConfigError(f"model.min_depth ({self.min_depth}) must be > 0 and below max_depth "
                              f"({self.max_depth})")
        if self.gate_temperature <= 0:
            raise ConfigError(f"model.gate_temperature must be > 0, got {self.gate_temperature}")
        if self.num_bins < 2:
            raise ConfigError(f"model.num_bins must be at least 2, got {self.num_bins}")


@dataclass
class LossConfig:
    """``ce·CE(bins) + l1·L1 + silog·SILog`` over valid ground truth (paper weights 1, 1, 0.5)."""

    ce_weight: float = 1.0
    l1_weight: float = 1.0
    silog_weight: float = 0.5
    # "usual": alpha*sqrt(mean(g^2) - lambda*mean(g)^2) (BTS/AdaBins); "paper": alpha*(Var(g) + lambda*mean(g)^2)
    silog_form: Literal["usual", "paper"] = "usual"
    silog_lambda: float = 0.85
    silog_alpha: float = 10.0


@dataclass
class OptimConfig:
    """AdamW with a constant learning rate, as in the paper."""

    lr: float = 1e-5  # tuned CLIP blocks
    adapter_lr: float | None = None  # adapters; None = lr
    head_lr: float | None = None  # decoder and heads; None = lr
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0


@dataclass
class AugmentConfig:
    scale_min: float = 1.0  # random resize factor range before the crop to the model size
    scale_max: float = 1.25
    hflip: bool = True
    color_jitter: float = 0.2  # brightness/contrast/saturation amplitude; 0 disables


@dataclass
class DataConfig:
    """Where training and validation frames come from (any source ``open_source`` reads)."""

    train: str | None = None  # path: NYU .mat, file list, folder, or rosbag2
    val: str | None = None  # None = hold out ``val_fraction`` of the training source (by time for bags)
    data_root: str | None = None  # for file lists: paths are relative to it
    train_split: str = "train"
    val_split: str = "test"
    val_fraction: float = 0.1
    depth_scale: float | None = None  # 16-bit depth units per metre; None = the format's default
    image_topic: str = "/camera/color/image_raw"  # for rosbag2 sources
    depth_topic: str = "/camera/depth/image_raw"
    max_val_images: int | None = None  # cap validation cost on long runs
    num_workers: int = 2
    skip_bad_frames: bool = False  # True: an unreadable training frame is replaced by the next one and counted
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class PhotometricConfig:
    """Self-supervision from a camera and its motion in ``/tf`` (Monodepth2's recipe; docs/TRAINING.md).

    Used when ``supervision`` is ``photometric`` or ``mixed``: each training frame t is warped from its
    neighbours t-k and t+k with the predicted depth and the camera's relative pose from TF.
    """

    frame_offset: int = 1  # k: the source frames are t-k and t+k
    min_translation: float = 0.05  # metres: a neighbour whose camera moved less is skipped (no depth signal)
    fixed_frame: str = "odom"  # the TF frame the camera's poses are looked up in
    camera_frame: str | None = None  # None: the image messages' frame_id (the optical frame)
    ssim_weight: float = 0.85  # alpha: alpha*(1-SSIM)/2 + (1-alpha)*L1
    smoothness_weight: float = 1.0e-3  # edge-aware smoothness of mean-normalised inverse depth
    automask: bool = True  # ignore pixels where an unwarped source already matches the target better
    depth_weight: float = 1.0  # mixed only: weight of the depth loss on frames that have depth

    def validate(self) -> None:
        if self.frame_offset < 1:
            raise ConfigError(f"photometric.frame_offset must be at least 1, got {self.frame_offset}")
        if self.min_translation < 0:
            raise ConfigError(f"photometric.min_translation must not be negative, got {self.min_translation}")
        if not 0.0 <= self.ssim_weight <= 1.0:
            raise ConfigError(f"photometric.ssim_weight must lie in [0, 1], got {self.ssim_weight}")
        if self.smoothness_weight < 0 or self.depth_weight < 0:
            raise ConfigError("photometric.smoothness_weight and photometric.depth_weight must not be negative")
        if not self.fixed_frame.strip():
            raise ConfigError("photometric.fixed_frame must name a TF frame, e.g. odom")


@dataclass
class TrainConfig:
    """A whole training run; ``config/train_*.yaml`` override these defaults (the paper's recipe)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # depth: ground-truth depth; photometric: view synthesis from a bag's images and /tf (no depth in the loss);
    # mixed: photometric plus the depth loss on frames that have depth
    supervision: Literal["depth", "photometric", "mixed"] = "depth"
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    epochs: int = 30
    batch_size: int = 8  # per process
    max_steps: int | None = None  # stops early when reached
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    log_every: int = 10
    val_every: int = 500  # steps (0: only at epoch ends and at the end of the run)
    val_at_epoch_end: bool = True  # also validate after every epoch
    ckpt_every: int = 500  # steps (last.pt; also written at the end of the run)
    best_metric: str = "abs_rel"  # lower is better unless it is a delta
    out: str = "runs/latest"


T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check (and gently coerce ints to floats) one value against its annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where, source)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{source}: '{where}' must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(a) for a in typing.get_args(tp))
            raise ConfigError(f"{source}: '{where}' must be one of {choices}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{where}' must be a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_convert(v, item_tp, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{where}' must be a mapping, got {value!r}")
        return from_dict(tp, value, source=source, prefix=f"{where}.")
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: '{where}' must be true or false, got {value!r}")
    if tp in (int, float, str) and (not isinstance(value, tp) or isinstance(value, bool) and tp is not bool):
        raise ConfigError(f"{source}: '{where}' must be {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], *, source: str = "config", prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or 'top level'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}' (known keys: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], f"{prefix}{k}", source) for k, v in data.items()}
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate()
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-data view of a config, for YAML and checkpoints."""
    return dataclasses.asdict(obj)


def load_yaml(path: str | Path, cls: type[T] = TrainConfig) -> T:  # type: ignore[assignment]
    """Load ``cls`` from a YAML file of overrides."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    return from_dict(cls, data, source=str(path))


def save_yaml(obj: Any, path: str | Path) -> None:
    """Write a config as YAML, atomically (a run killed mid-write keeps the old file)."""
    from moadepth_core.files import write_atomic

    write_atomic(path, yaml.safe_dump(to_dict(obj), sort_keys=False))


def apply_overrides(obj: T, overrides: dict[str, Any], *, source: str = "command line") -> T:
    """Return a copy of ``obj`` with dotted-key overrides (``{"optim.lr": 1e-4}``) applied and checked."""
    data = to_dict(obj)
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"{source}: unknown key '{dotted}'")
            node = node[p]
        node[leaf] = value
    return from_dict(type(obj), data, source=source)
