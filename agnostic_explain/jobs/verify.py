"""Checking a job's output folder without running anything: ``verify_results``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import JobError
from .integrity import check_records, damage_message, damaged_chunks
from .store import MANIFEST, read_manifest

__all__ = ["Verification", "verify_results"]


@dataclass
class Verification:
    """What :func:`verify_results` found.

    Attributes
    ----------
    n_chunks : int
        Committed chunks checked.
    n_files : int
    damaged : dict of int to list of str
        Chunk index to the problems of its files; empty when every file is as written.
    unchecked : list of int
        Chunks committed by a version that kept no checksums: only their presence was checked.
    complete : bool
        Whether the job had finished every chunk.
    """

    n_chunks: int
    n_files: int
    damaged: dict = field(default_factory=dict)
    unchecked: list = field(default_factory=list)
    complete: bool = False

    @property
    def ok(self) -> bool:
        return not self.damaged


def verify_results(out, *, raise_errors: bool = True) -> Verification:
    """Check every committed chunk file of the job in ``out`` against its recorded sha256 and size.

    Parameters
    ----------
    out : str or os.PathLike
        A job's output folder.
    raise_errors : bool, default True
        Raise when a chunk is damaged or missing; False returns the findings instead.

    Returns
    -------
    Verification

    Raises
    ------
    JobError
        A chunk file is missing, truncated, damaged or swapped with another (the message names
        the chunks and files), or the manifest cannot be read.
    """
    out = Path(out)
    if not (out / MANIFEST).is_file():
        raise JobError(f"out: {str(out)!r} holds no job manifest ({MANIFEST}); expected a job's output folder")
    manifest = read_manifest(out / MANIFEST)
    records = check_records(manifest, out / MANIFEST)
    damaged = damaged_chunks(out, manifest)
    unchecked = sorted(int(key) for key, record in records.items() if record.get("files") and not record.get("checks"))
    result = Verification(
        n_chunks=len(records), n_files=sum(len(record.get("files", [])) for record in records.values()),
        damaged=damaged, unchecked=unchecked, complete=bool(manifest.get("complete")),
    )
    if damaged and raise_errors:
        raise JobError(damage_message(out, damaged))
    return result


# -- one job per folder -------------------------------------------------------------------
