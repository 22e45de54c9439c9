"""The fuzz harness (``fuzz/``): saved failing inputs replay cleanly, and a bounded run finds nothing.

Every case must end in success or in one of the library's own errors; any other exception, a
crash or a hang fails. ``make fuzz SECONDS=600`` runs longer and keeps new failures under
``tests/fuzz_cases/``, which the replay test then covers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fuzz.runner import CASES_DIR, Worker, classify, fuzz, is_bad, replay
from fuzz.seeds import seeds

#: the bounded run of ``make test``; FUZZ_SECONDS=0 skips it
SECONDS = float(os.environ.get("FUZZ_SECONDS", "60"))


def test_the_worker_reports_crashes_and_hangs_and_goes_on():
    worker = Worker(memory_bytes=3 << 30, timeout=60)
    linear = next(seed for seed in seeds() if seed.name == "linear")
    try:
        assert classify(worker.run({"model": linear.model, "self_test": "crash"})) == "crash"
        assert classify(worker.run({"model": linear.model, "mode": "bytes"})) == "success"
        worker.timeout = 3  # the worker is started and warm: a case that sleeps an hour is cut short
        assert classify(worker.run({"model": linear.model, "self_test": "hang"})) == "timeout"
        worker.timeout = 60
        assert classify(worker.run({"model": linear.model, "mode": "bytes"})) == "success"
        assert worker.restarts == 2
    finally:
        worker.close()


def test_saved_cases_replay_without_a_raw_exception_crash_or_hang():
    folders = sorted(path for path in CASES_DIR.iterdir() if (path / "case.json").is_file())
    assert folders, f"no saved cases under {CASES_DIR}"
    outcomes = replay(folders)
    bad = {Path(folder).name: outcome for folder, outcome in outcomes.items() if is_bad(outcome)}
    assert not bad, f"saved fuzz cases still fail: {bad}"


@pytest.mark.fuzz
@pytest.mark.skipif(SECONDS <= 0, reason="FUZZ_SECONDS=0")
def test_a_bounded_fuzz_run_finds_no_raw_exception_crash_or_hang():
    found = fuzz(seconds=SECONDS, seed=int(os.environ.get("FUZZ_SEED", "0")), save=None)
    print(f"fuzz: {found['cases']} cases in {found['seconds']} s: {found['counts']}")
    bad = {outcome: count for outcome, count in found["counts"].items() if is_bad(outcome)}
    assert found["cases"] > 100
    assert not bad, f"fuzz outcomes that are neither success nor a library error: {bad} of {found['counts']}"
