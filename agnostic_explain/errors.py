"""The exception tree of agnostic-explain.

Every error the library raises on purpose derives from :class:`AgnosticExplainError`,
and also from the built-in exception a Python user would expect, so that
``except ValueError`` keeps working::

    AgnosticExplainError
    ├── ModelLoadError (ValueError)          the model cannot be read, parsed or checked
    │   └── ModelNotFoundError (FileNotFoundError)
    ├── InputError (ValueError)              an input array does not fit the model
    │   ├── InputShapeError                  wrong rank or a static dimension differs
    │   ├── InputDtypeError                  a dtype that cannot be cast safely
    │   └── NonFiniteInputError              NaN or infinity in an explained input
    ├── TargetError (ValueError)             the target is out of range or malformed
    ├── ParameterError (ValueError)          an explainer or runtime argument is invalid
    ├── ProviderError (RuntimeError)         an execution provider cannot be used
    ├── ConversionError (ValueError)         a framework model cannot be converted to ONNX
    │   └── ParityError                      ONNX Runtime and the framework disagree
    ├── ModelExecutionError (RuntimeError)   ONNX Runtime (or a wrapped callable) failed
    │   └── OutOfMemoryError (MemoryError)   even one row does not fit in memory
    ├── MissingDependencyError (ImportError) an optional extra is not installed
    └── JobError (RuntimeError)              a data-set job cannot go on (disk full, a worker failed)
        └── JobMismatchError (ValueError)    the output folder holds another job's results

Messages name the parameter, the value received and what was expected.
"""

from __future__ import annotations

__all__ = [
    "AgnosticExplainError",
    "ConversionError",
    "InputDtypeError",
    "InputError",
    "InputShapeError",
    "JobError",
    "JobMismatchError",
    "MissingDependencyError",
    "ModelExecutionError",
    "ModelLoadError",
    "ModelNotFoundError",
    "NonFiniteInputError",
    "OutOfMemoryError",
    "ParityError",
    "ParameterError",
    "ProviderError",
    "TargetError",
]


class AgnosticExplainError(Exception):
    """Base class of every error raised on purpose by agnostic-explain."""


class ModelLoadError(AgnosticExplainError, ValueError):
    """The model could not be read, parsed as ONNX, or passed the ONNX checker."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """The model path does not exist."""


class InputError(AgnosticExplainError, ValueError):
    """An input array does not match what the model declares."""


class InputShapeError(InputError):
    """An input has the wrong rank, or a static dimension differs from the model's."""


class InputDtypeError(InputError):
    """An input's dtype cannot be converted safely to the model's dtype."""


class NonFiniteInputError(InputError):
    """An explained input holds NaN or infinite values."""


class TargetError(AgnosticExplainError, ValueError):
    """The target is malformed or out of range for the selected output."""


class ParameterError(AgnosticExplainError, ValueError):
    """An argument of an explainer, the runtime or the CLI is invalid."""


class ProviderError(AgnosticExplainError, RuntimeError):
    """An explicitly requested execution provider is unavailable or failed to start."""


class ConversionError(AgnosticExplainError, ValueError):
    """A framework model could not be converted: an unsupported layer or op, or a bad sample."""


class ParityError(ConversionError):
    """The converted model's outputs differ from the framework's beyond the tolerance."""


class ModelExecutionError(AgnosticExplainError, RuntimeError):
    """Running the model failed; the original exception is chained as ``__cause__``."""


class OutOfMemoryError(ModelExecutionError, MemoryError):
    """The model ran out of memory; the batching layer halves the batch before raising this."""


class MissingDependencyError(AgnosticExplainError, ImportError):
    """An optional dependency is missing; the message says which extra installs it."""


class JobError(AgnosticExplainError, RuntimeError):
    """A data-set job cannot go on; the chunks it finished stay committed, and a rerun resumes."""


class JobMismatchError(JobError, ValueError):
    """The output folder holds a job with another spec; the message names the fields that differ."""


def require(module: str, extra: str):
    """Import an optional dependency, or raise :class:`MissingDependencyError` with a hint.

    Parameters
    ----------
    module : str
        Module to import, e.g. ``"torch"``.
    extra : str
        The pip requirement or extra that provides it, e.g. ``"agnostic-explain[torch]"``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{module!r} is required for this feature but is not installed; "
            f"install it with: pip install '{extra}'"
        ) from error
