"""``finetuned``: an EfficientNet-Lite encoder whose last blocks were trained by ``visrec finetune --unfreeze N``.

The folder holds ``backbone.safetensors`` (the whole trunk's weights) and ``encoder.json`` (the base encoder's
name and options). Everything else -- preprocessing, pooling, ONNX export and caching, the label bridge -- is
the base encoder's; the fingerprint is computed from the fine-tuned weights' hash, so an index built with it
refuses any other encoder, and the export is cached under its own name.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from visrec.encoders.backbone import BackboneEncoder
from visrec.errors import BadInput, MissingWeights

BACKBONE_FILE = "backbone.safetensors"
INFO_FILE = "encoder.json"


@dataclasses.dataclass(frozen=True)
class LocalWeights:
    """A weights file in a folder of the user's (same interface as ``PackagedWeights``)."""

    path: Path
    distribution: str = "(fine-tuned by visrec)"
    version: str = ""
    licence: str = "as the base model's weights"

    @property
    def relpath(self) -> str:
        return str(self.path)

    def locate(self, purpose: str) -> Path:
        if not self.path.is_file():
            raise MissingWeights(f"{purpose} needs {self.path}, which is missing; run visrec finetune --unfreeze again")
        return self.path


class FinetunedEncoder(BackboneEncoder):
    """A :class:`BackboneEncoder` over fine-tuned weights; ``describe()`` records the folder as ``model``."""

    def __init__(self, model: Path, base: str, **options: Any) -> None:
        from visrec.encoders.efficientnet import SPECS

        if base not in SPECS:
            raise BadInput(f"{model / INFO_FILE}: base encoder {base!r} cannot be fine-tuned; one of {sorted(SPECS)}")
        spec = SPECS[base]
        spec = dataclasses.replace(
            spec,
            name="finetuned",
            weights=LocalWeights(model / BACKBONE_FILE),  # type: ignore[arg-type]
            description=f"{base} with its last blocks fine-tuned ({model}); {spec.description}",
        )
        self.model = model
        self.base = base
        super().__init__(spec, **options)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["options"] = {"model": str(self.model), **info["options"]}
        info["base"] = self.base
        return info


def create(model: str | Path, **options: Any) -> FinetunedEncoder:
    """The encoder saved in folder ``model`` (``visrec finetune --unfreeze N --out model``); ``options`` override
    the recorded :class:`~visrec.encoders.backbone.BackboneOptions` (the recorded ones are used by default)."""
    folder = Path(model).expanduser().resolve()
    try:
        info = json.loads((folder / INFO_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(
            f"{folder} is not a fine-tuned encoder folder ({INFO_FILE} unreadable: {exc}); "
            "make one with visrec finetune DATASET --unfreeze 2 --out FOLDER"
        ) from exc
    recorded = dict(info.get("options") or {})
    return FinetunedEncoder(folder, str(info.get("base")), **{**recorded, **options})
