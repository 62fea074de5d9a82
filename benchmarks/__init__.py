"""asyncmp's benchmark suite (DESIGN §6): run it with ``python -m benchmarks``.

Not part of the installed package: the peer libraries it compares against (janus, culsans,
aiologic, pykka) and matplotlib come from the ``bench`` extra and are never runtime
dependencies of asyncmp.
"""
