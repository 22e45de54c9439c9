"""A fuzz harness for agnostic-explain: mutated small models through load, explain, layers and split.

Every case must end in success or in one of the library's own errors (an
``AgnosticExplainError``): any other exception, a crash (a signal) or a hang is a finding.
Cases run in a worker process with a time and a memory limit (``worker.py``), fed through a
pipe and restarted after a crash or a timeout (``runner.py``). Seed models are built in code
(``seeds.py``) and mutated at the proto and the byte level with a seeded ``random.Random``
(``mutators.py``). ``python -m fuzz --seconds 600`` runs for as long as asked and keeps each
failing input under ``tests/fuzz_cases/``, which ``tests/test_fuzz.py`` replays.

Never imported by the package.
"""
