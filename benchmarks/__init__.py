"""Speed measurements, one JSON line per measurement, each with its device and a baseline measured in the same run
(README.md in this folder). Run from the repository root as ``python -m benchmarks.<name>``; the shared pieces are
``common`` (device, memory, timing, output), ``measure`` and ``splits`` (the evaluation benchmarks),
``training_setups`` (the training benchmark and the GPU check) and ``references`` (the plain implementations the
tests also check reid against). Not installed with reid."""
