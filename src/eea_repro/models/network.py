"""Explained models: timm classifiers that take images in [0, 1].

Every map method and every metric works in one input space, the resized [0, 1] image, because the paper removes
pixels by setting them to 0 *before* normalisation. Normalisation therefore lives inside :class:`ExplainedModel`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
from torch import nn

from eea_repro.models.checkpoints import load_state_dict, save_state_dict
from eea_repro.workflow import numerics
from eea_repro.workflow.io import read_classes

FAMILIES = ("vit", "cnn")


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild an explained model: the timm name, its overrides and its input convention."""

    timm_name: str
    family: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    timm_kwargs: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, entry: dict) -> "ModelSpec":
        return cls(
            timm_name=entry["timm_name"],
            family=entry["family"],
            input_size=int(entry["input_size"]),
            mean=tuple(entry["mean"]),
            std=tuple(entry["std"]),
            timm_kwargs=dict(entry.get("timm_kwargs") or {}),
        )


class ExplainedModel(nn.Module):
    """A timm classifier behind a [0, 1] -> normalised input adapter.

    ``net`` is the bare timm model (methods hook into its blocks / stages); ``family`` is ``"vit"`` or ``"cnn"``.
    """

    def __init__(self, net: nn.Module, spec: ModelSpec):
        super().__init__()
        self.net = net
        self.spec = spec
        self.family = spec.family
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        return (images01 - self.mean) / self.std

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(images01))


def create_network(spec: ModelSpec, num_classes: int, pretrained: bool = False) -> nn.Module:
    """Build the timm network by name; ``pretrained=True`` lets timm fetch the hub weights (download rule only)."""
    import timm  # here, not at the top: timm's import costs about 2 s of CPU, which jobs without a model skip
    if spec.family not in FAMILIES:
        raise ValueError(f"model family {spec.family!r} is not one of {FAMILIES}")
    kwargs = dict(spec.timm_kwargs)
    if spec.family == "vit":
        kwargs.setdefault("img_size", spec.input_size)
    return timm.create_model(spec.timm_name, pretrained=pretrained, num_classes=num_classes, **kwargs)


def for_inference(model: ExplainedModel) -> ExplainedModel:
    """A copy of the model in the memory layout its inference-only uses (map methods, the metric forwards) run fastest
    in: channels-last for CNNs (1.8x on the embedded ResNet on one CPU thread; a ViT gains nothing and is returned
    as is). Results equal the contiguous model's up to float rounding. Training and EEA's fine-tuning keep the
    contiguous model, so trained weights and explainers stay bit for bit what they were."""
    if getattr(model, "family", None) != "cnn":  # a ViT, or any other module (tests)
        return model
    import copy

    return copy.deepcopy(model).to(memory_format=torch.channels_last)


def compile_model(model: nn.Module, enabled: bool, device: str | torch.device = "cpu") -> nn.Module:
    """``torch.compile`` a model for plain forward passes (the metric engine's many same-shape batches); off = the
    model itself. Not for map methods: they hook into blocks and take gradients through them. Never in a portable
    run on a CPU, where the generated code is built for the host CPU (:mod:`eea_repro.workflow.numerics`)."""
    if enabled and not numerics.compiles_for_host(numerics.run_mode(), torch.device(device)):
        print("metrics.compile ignored: numerics is portable and torch.compile builds code for this CPU")
        return model
    return torch.compile(model) if enabled else model


def build_explained_model(
    spec: ModelSpec, num_classes: int, checkpoint: str | Path | None = None, device: str | torch.device = "cpu"
) -> ExplainedModel:
    """Rebuild an explained model and load its checkpoint (safetensors or a weights-only torch file)."""
    net = create_network(spec, num_classes)
    if checkpoint is not None:
        state = load_state_dict(checkpoint)
        head_shape = _classifier_rows(net, state)
        if head_shape is not None and head_shape != num_classes:
            raise ValueError(
                f"{checkpoint}: the checkpoint's classifier has {head_shape} classes but the dataset has {num_classes}"
            )
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{checkpoint}: does not fit timm model {spec.timm_name!r} "
                f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
            )
    model = ExplainedModel(net, spec).to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _classifier_rows(net: nn.Module, state: dict) -> int | None:
    """Number of classes stored in a checkpoint's classifier weight, found by the network's own classifier name."""
    name = net.default_cfg.get("classifier") if hasattr(net, "default_cfg") else None
    if not name:
        return None
    weight = state.get(f"{name}.weight")
    return None if weight is None else int(weight.shape[0])


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; an explicit ``cuda`` without a GPU is an error, not a fallback.

    The first call of a job also puts torch in the run's deterministic mode and logs the kernels it selected."""
    if requested == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("config device is 'cuda' but no CUDA device is visible; set device: auto or cpu")
    else:
        device = torch.device(requested)
    _configure_numerics(device.type)
    return device


@cache
def _configure_numerics(device_type: str) -> None:
    for line in numerics.configure_torch(torch.device(device_type)):
        print(line)


# A download that fails for a reason a later try can fix is tried again after these waits (seconds).
DOWNLOAD_RETRY_WAITS_S = (10.0, 30.0)


def worth_retrying(error: BaseException) -> bool:
    """A dropped connection, a timeout, the hub's 5xx / 429 or its "cannot reach the Hub" fallback (anywhere in the
    error's chain): a later try may succeed. An unknown model, tag or repository, or offline mode set on purpose, fail
    the same way every time, and so does a hub client told to stay offline (``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if constants.HF_HUB_OFFLINE:
        return False
    while error is not None:
        if isinstance(error, OfflineModeIsEnabled):
            return False
        if isinstance(error, HfHubHTTPError):
            status = getattr(getattr(error, "response", None), "status_code", None)
            return status is None or status >= 500 or status == 429
        if isinstance(error, (ConnectionError, TimeoutError, LocalEntryNotFoundError)):
            return True
        error = error.__cause__ or error.__context__
    return False


def download_pretrained(spec: ModelSpec, pretrained_tag: str, num_classes: int, destination: str | Path,
                        retry_waits_s=DOWNLOAD_RETRY_WAITS_S) -> str:
    """Fetch pretrained weights through timm (Hugging Face hub) for a ``ModelSpec`` and store them as safetensors.

    Only the download is tried again (:func:`worth_retrying`), once per entry of ``retry_waits_s``; the checks of the
    weights that follow fail the same way on every try, so the rule itself does not retry. Offline, timm raises a
    connection error deep inside the hub client; we turn it into one line naming the key to set.
    """
    import time
    from dataclasses import replace

    tagged = replace(spec, timm_name=f"{spec.timm_name}.{pretrained_tag}")
    for attempt in range(len(retry_waits_s) + 1):
        try:
            net = create_network(tagged, num_classes, pretrained=True)
            break
        except Exception as error:
            if attempt < len(retry_waits_s) and worth_retrying(error):
                print(f"downloading {tagged.timm_name!r} failed ({type(error).__name__}); trying again in "
                      f"{retry_waits_s[attempt]:g} s")
                time.sleep(retry_waits_s[attempt])
                continue
            raise ValueError(
                f"could not download pretrained weights for {tagged.timm_name!r} ({type(error).__name__}); offline "
                "runs must set models.<name>.checkpoint.source: file and models.<name>.checkpoint.path to a local "
                "weights file"
            ) from None
    return save_state_dict(net.state_dict(), destination)


def reference_state(spec: ModelSpec, num_classes: int) -> dict[str, torch.Tensor]:
    """The names and shapes of the network's state dict, built on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        return create_network(spec, num_classes).state_dict()


def load_model(model_cfg: dict, checkpoint, classes_file, device):
    return build_explained_model(
        ModelSpec.from_config(model_cfg), len(read_classes(classes_file)), checkpoint, device=device
    )
