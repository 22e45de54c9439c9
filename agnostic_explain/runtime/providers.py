"""Choosing ONNX Runtime execution providers: "auto", shortcuts, or explicit lists."""

from __future__ import annotations

import ctypes
import functools

import onnxruntime as ort

from ..errors import ParameterError, ProviderError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
#: CUDA provider options used unless the caller sets them. TF32 is off so that attributions
#: keep float32 accuracy (it moves Ampere/Hopper results by ~1e-2 relative). cuDNN's
#: heuristic algorithm choice avoids an exhaustive kernel search for every new batch shape.
CUDA_DEFAULTS = {"use_tf32": 0, "cudnn_conv_algo_search": "HEURISTIC"}
_SHORTCUTS = {"cpu": CPU, "cuda": CUDA, "gpu": CUDA}


@functools.lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports, 0 when there is no driver.

    Asking the driver directly keeps ONNX Runtime from printing CUDA errors on machines
    without a GPU, which it does when a CUDA session is merely attempted there.
    """
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


def cuda_usable() -> bool:
    """Whether this onnxruntime build has the CUDA provider and a CUDA device is present."""
    return CUDA in ort.get_available_providers() and cuda_device_count() > 0


def resolve_providers(providers, device_id: int = 0) -> list:
    """Turn the user's ``providers`` argument into an ONNX Runtime provider list.

    Parameters
    ----------
    providers : "auto", "cpu", "cuda", or a list of provider names / (name, options) pairs
        ``"auto"`` picks CUDA when it is usable, else CPU. Explicit lists are honoured as given,
        with ``device_id`` added to the CUDA provider's options unless they set one.
    device_id : int
        CUDA device ordinal.

    Returns
    -------
    list of (str, dict)

    Raises
    ------
    ProviderError
        A requested provider is not available in this onnxruntime build.
    """
    if not isinstance(device_id, int) or device_id < 0:
        raise ParameterError(f"device_id must be a non-negative int, got {device_id!r}")
    if isinstance(providers, str):
        key = providers.lower()
        if key == "auto":
            names = [CUDA, CPU] if cuda_usable() else [CPU]
        elif key in _SHORTCUTS:
            names = [_SHORTCUTS[key]] + ([CPU] if _SHORTCUTS[key] != CPU else [])
        else:
            names = [providers]
        entries = [(name, {}) for name in names]
    elif isinstance(providers, (list, tuple)) and providers:
        entries = []
        for item in providers:
            if isinstance(item, str):
                entries.append((item, {}))
            elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], dict):
                entries.append((item[0], dict(item[1])))
            else:
                raise ParameterError(
                    f"providers: expected provider names or (name, options) pairs, got {item!r}"
                )
    else:
        raise ParameterError(
            f"providers must be 'auto', 'cpu', 'cuda' or a non-empty list, got {providers!r}"
        )
    available = ort.get_available_providers()
    for name, options in entries:
        if name not in available:
            raise ProviderError(
                f"providers: {name!r} is not available in this onnxruntime build; "
                f"available: {', '.join(available)}"
            )
        if name == CUDA:
            if cuda_device_count() == 0:
                raise ProviderError(
                    "providers: CUDAExecutionProvider was requested but no CUDA device was found"
                )
            options.setdefault("device_id", device_id)
            for key, value in CUDA_DEFAULTS.items():
                options.setdefault(key, value)
            _prepare_cuda()
    return entries


@functools.lru_cache(maxsize=1)
def _prepare_cuda() -> None:
    """Load CUDA and cuDNN from the nvidia-* pip packages, where onnxruntime-gpu finds them only so.

    Also raises ONNX Runtime's default log level to errors: with explicit CUDA options it
    warns about plugin execution-provider devices on every session, which is noise here.
    """
    ort.set_default_logger_severity(3)
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception:  # system-wide CUDA installs need no preloading
            pass


def with_cuda_graph(entries: list) -> list:
    """``entries`` with ``enable_cuda_graph`` set on the CUDA provider (others unchanged)."""
    return [(name, {**options, "enable_cuda_graph": "1"} if name == CUDA else options) for name, options in entries]


def without_cuda_graph(entries: list) -> list:
    """``entries`` with ``enable_cuda_graph`` removed, for models whose capture fails."""
    return [(name, {key: value for key, value in options.items() if key != "enable_cuda_graph"})
            for name, options in entries]
