"""Typed errors. Every message says what was expected, what was found and how to fix it."""

from __future__ import annotations


class VisrecError(Exception):
    """Base class of every error visrec raises on purpose.

    ``exit_code`` is what the CLI returns when this error reaches it.
    """

    exit_code = 1


class BadInput(VisrecError):
    """The user gave an argument, file or folder that cannot be used."""

    exit_code = 2


class BadImage(BadInput):
    """An image file could not be decoded.

    ``reason`` is a short, stable key (``"missing"``, ``"corrupt"``, ``"truncated"``, ``"empty"``,
    ``"not-an-image"``, ``"too-large"``, ``"unreadable"``) that run summaries count.
    """

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        self.path = path
        self.reason = reason
        self.detail = detail
        msg = f"{path}: cannot use this image ({reason})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class EmptyDataset(BadInput):
    """A folder or manifest holds no usable image."""


class UnknownIds(BadInput):
    """Ids were asked for that the index does not hold; ``missing`` lists them in the order given."""

    def __init__(self, message: str, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(message)


class DimensionMismatch(VisrecError):
    """Vectors of one width were given where another was expected."""

    exit_code = 3


class ManifestMismatch(VisrecError):
    """An index or adapter was opened with an encoder (or schema) other than the one that built it."""

    exit_code = 3


class IndexBusy(VisrecError):
    """Another process holds the write lock of an index folder."""

    exit_code = 4


class IndexCorrupt(VisrecError):
    """An index folder is missing files or holds files that do not agree with its manifest."""

    exit_code = 3


REINDEX_FIX = "re-index the images into a new folder (visrec index SOURCE --out NEW.vrx)"
"""The fix an :class:`IndexCorrupt` names when stored vectors or metadata are damaged: an update of the same folder
reads the damaged files too, so it cannot repair them."""


class NotCalibrated(VisrecError):
    """An operation needs calibration data that the index does not hold yet."""

    exit_code = 2


class MissingExtra(VisrecError):
    """An optional dependency is not installed; the message names the pip command that installs it."""

    exit_code = 5

    # Extras that bring PyTorch: a plain pip install would take the CUDA build (several GB) on Linux.
    TORCH_EXTRAS = frozenset({"export", "train", "backbones", "clip", "openclip", "sam", "mobilesam", "all"})

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        how = f"pip install 'visrec[{extra}]'"
        if extra in self.TORCH_EXTRAS:
            flag = "--all" if extra == "all" else f"--extras {extra}"
            how = (
                f"bash scripts/install.sh {flag} (it takes PyTorch's CPU wheel), or "
                f"pip install 'visrec[{extra}]' --extra-index-url https://download.pytorch.org/whl/cpu"
            )
        super().__init__(f"{purpose} needs the package {package!r}, which is not installed. Install it with: {how}")


class MissingWeights(VisrecError):
    """Pretrained weights are not where they should be; the message says how to install them."""

    exit_code = 5


class StageOrderError(VisrecError):
    """A set-once / query-many object was queried before it was set."""
