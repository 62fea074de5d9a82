"""asyncmp's benchmark suite: ``python -m benchmarks`` (results and targets: docs/performance.md).

Not part of the installed package: the peer libraries it compares against (janus, culsans,
aiologic, pykka) and matplotlib come from the ``bench`` extra and are never runtime
dependencies of asyncmp.
"""
