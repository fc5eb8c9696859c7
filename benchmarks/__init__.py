"""kexue's kernels timed against the implementations people use: ``make bench`` (``python -m benchmarks``).

``harness`` measures (interleaved timing, paired ratios, peak memory, result files); ``rope``,
``attention`` and ``hippo`` define what is compared; ``peers`` imports the benchmark-only peer libraries
of requirements-bench.txt when present. Results go to ``benchmarks/results/<device>.json``, which the
book's appendix (chapters/appendix/benchmarks.md) plots.
"""
