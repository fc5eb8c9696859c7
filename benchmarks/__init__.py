"""kexue's kernels timed against the implementations people use: ``make bench``.

``registry`` holds one declaration per benchmark (sizes, inputs, candidates, reference,
check); ``rope``, ``attention``, ``hippo``, ``kernels`` and ``bert`` declare them;
``harness`` measures (interleaved timing, paired ratios, peak memory) and defines the
result rows; ``report`` makes the appendix's tables and verdicts from the result files
``benchmarks/results/<device>.json`` (chapters/appendix/benchmarks.md).
"""
