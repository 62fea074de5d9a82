"""asyncmp's benchmark suite: run it with ``python -m benchmarks`` (targets: docs/design.md).

Not part of the installed package: the peer libraries it compares against (janus, culsans,
aiologic, pykka) and matplotlib come from the ``bench`` extra and are never runtime
dependencies of asyncmp.
"""
