"""What the CPU benchmarks (gpt2_block_cpu.py, moe_cpu.py) share: running a
process held to N threads, its peak memory, the machine's description, and
writing the report."""

import os
import re
import subprocess


def thread_env(threads):
    """The environment that holds a process to `threads` threads, its BLAS's included."""
    env = dict(os.environ)
    env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    return env


def run(command, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def timed(command, env=None):
    """Runs under /usr/bin/time -v; returns (result, peak RSS in KiB)."""
    result = run(["/usr/bin/time", "-v"] + command, env=env)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    return result, int(peak.group(1)) if peak else 0


def machine():
    """(CPU model, CPU count, memory in GiB)."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        memory = int(f.readline().split()[1]) / 1024 / 1024
    return cpu, os.cpu_count(), memory


def report(lines, out):
    """Prints the report and writes it to `out` when given."""
    text = "\n".join(lines)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)
