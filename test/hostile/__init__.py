"""The hostile-input catalogue (issue 13, point 1): hostile inputs and faults, each run in a real
subprocess (``inference.py``, ``python -m hnseg batch``, ``python -m hnseg weights verify``) under a
memory cap, each expected to be refused with an exact exit code and a named error.

- ``kit``: the records (``Case``: what the catalogue promises; ``Setup``: what a builder made on disk)
  and the shared helpers builders use (tiny phantom images, command lines, weights copies);
- one builder module per class (``location``, ``writes``, ``weights``, ``locks``, ``escapes``,
  ``bombs``, ``plausibility``, ``tracebacks``, ``existing``);
- ``cases``: the one table of cases (``CASES``);
- ``runner``: runs a case's child process (memory cap, timeout, wall time and peak RSS by ``wait4``);
- ``summary``: the per-class summary printed at the end of the pytest run;
- ``table``: writes docs/hostile_inputs.md from the table (``python test/hostile/table.py``).

The test is test/test_hostile_catalogue.py.
"""
