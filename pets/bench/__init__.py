"""Overhead of each technique against plaintext on the same work (``pets bench``).

Each section runs its techniques side by side in one process and reports
ratios — time, memory, bytes, accuracy — against the plain baseline of the
same run. ``benchmarks/`` times the same workloads with pytest-benchmark.
"""
