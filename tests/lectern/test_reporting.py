"""What a benchmark reports beside its timings: the CPU other processes took."""

import subprocess
import sys

from lectern.reporting import CpuMonitor, descendant_cpu_seconds

BURN = """
import sys, time
while time.process_time() < 0.3:
    pass
print(time.process_time(), flush=True)
sys.stdin.readline()
"""


def test_a_live_worker_process_counts_as_the_benchmarks_own_cpu():
    monitor = CpuMonitor()
    child = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        burnt = float(child.stdout.readline())  # the child is alive and not reaped
        assert child.pid in descendant_cpu_seconds()
        assert 1 not in descendant_cpu_seconds()
        cpu = monitor.stop()
    finally:
        child.communicate("\n")
    # This process waited meanwhile: without the worker its own CPU would be far less.
    assert burnt >= 0.3 and cpu["own_cpu_seconds"] >= burnt - 0.05
