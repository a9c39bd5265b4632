"""Speed and memory benchmarks: ours against Hugging Face transformers, side by side.

``python -m benchmarks.run`` (``make bench``) runs everything on this machine and
records JSON in ``benchmarks/results/`` and a table in ``docs/benchmarks.md``;
``benchmarks/gpu.sh`` runs the same comparisons on an NVIDIA GPU. Nothing here is
imported by the library or run by the test suite (``tests/test_benchmarks.py``
runs the tiny ``--quick``/``--small`` modes only to check that they work).
"""
