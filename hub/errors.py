"""User errors: a bad config value, bad data, a missing file, a device that is not there.

Code that checks the user's input raises :class:`UserError` (or a subclass keeping the
built-in type callers already catch: :class:`UserFileError`, :class:`UserKeyError`,
:class:`UserIndexError`). The ``semantic-hub`` CLI prints such an error as one line,
``semantic-hub: error: <what>, <where>, <what was expected>``, and exits non-zero; the
traceback only with ``HYDRA_FULL_ERROR=1`` or ``verbose=true``. Any other exception is a bug
and keeps its traceback.

:func:`check_run_config` validates the run-level settings (``batch_size``, ``device``,
``model.dtype``) before anything is loaded, so a typo fails in a second, not after a model load.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROG = "semantic-hub"
DTYPES = ("float32", "float16", "bfloat16", "float64")


class UserError(ValueError):
    """A problem with the user's input; the message says what, where and what was expected."""


class UserFileError(UserError, FileNotFoundError):
    """A file or directory the user named does not exist (also a FileNotFoundError)."""


class UserKeyError(UserError, KeyError):
    """An unknown name (language, region, token...) the user gave (also a KeyError)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UserIndexError(UserError, IndexError):
    """An index out of range the user gave (layer, position...; also an IndexError)."""


# errors of other modules that are the user's (named, so this module imports none of them):
# the model store's "no such model" and "not installed" (hub.store)
USER_ERROR_TYPES = frozenset({"UnknownModelError", "ModelNotInstalledError"})


def user_error(err: BaseException | None) -> UserError | None:
    """The UserError behind ``err``: itself, a USER_ERROR_TYPES error (as a UserError), or the
    cause of the wrappers a config system adds (Hydra's InstantiationException around an
    adapter's constructor); None for anything else (a bug)."""
    while err is not None:
        if isinstance(err, UserError):
            return err
        if any(c.__name__ in USER_ERROR_TYPES for c in type(err).__mro__):
            return UserError(str(err))
        if type(err).__name__ != "InstantiationException":
            return None
        err = err.__cause__
    return None


def one_line(err: BaseException) -> str:
    """The CLI's line for a user error: ``semantic-hub: error: <message on one line>``."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    msg = "; ".join(lines) or type(err).__name__
    return f"{PROG}: error: {msg}"


def check_dtype(dtype: Any, where: str = "model.dtype") -> str:
    """A torch dtype name the loaders accept, else a UserError naming the valid ones."""
    if str(dtype) not in DTYPES:
        raise UserError(f"{where}={dtype!r} is not a supported dtype, in the model config; "
                        f"expected one of {', '.join(DTYPES)}")
    return str(dtype)


def check_positive_int(value: Any, where: str) -> int:
    """``value`` as a positive integer, else a UserError (``batch_size=0``, ``-3``, ``2.5``, ``x``)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    if not ok:
        raise UserError(f"{where}={value!r} is not allowed, in the run config; expected a positive integer")
    return int(value)


def check_device(device: Any, where: str = "device") -> str:
    """A device torch can use on this machine (``cpu``, ``cuda``, ``cuda:N``, ``mps``), else a UserError."""
    import torch

    name = str(device)
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"{where}={name!r} is not a device name ({e}), in the run config; "
                        "expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return name
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{where}={name!r}: CUDA is not available on this machine (torch "
                            f"{torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); "
                            "expected device=cpu here, or a machine with an NVIDIA GPU")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UserError(f"{where}={name!r}: this machine has {count} CUDA device(s); "
                            f"expected cuda:0..cuda:{count - 1}")
        return name
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserError(f"{where}={name!r}: Apple MPS is not available on this machine; "
                            "expected device=cpu here, or a Mac with Apple silicon")
        return name
    if not hasattr(torch, dev.type) or not getattr(getattr(torch, dev.type), "is_available", lambda: False)():
        raise UserError(f"{where}={name!r}: device type {dev.type!r} is not available on this machine; "
                        "expected cpu, cuda, cuda:N or mps")
    return name


def check_run_config(cfg: Mapping) -> None:
    """Validate run-level settings before any data or model is loaded (UserError on the first bad one)."""
    check_positive_int(cfg.get("batch_size", 16), "batch_size")
    experiment = cfg.get("experiment") or {}
    if experiment.get("batch_size") is not None:
        check_positive_int(experiment.get("batch_size"), "experiment.batch_size")
    check_device(cfg.get("device", "cpu"))
    model = cfg.get("model") or {}
    if model.get("dtype") is not None:
        check_dtype(model.get("dtype"))
