"""What produced the figures: memory high-water marks, the machine, its load."""

from __future__ import annotations

import os
import platform
import resource
import subprocess

import torch


def peak_memory_mb(device: torch.device, address_space: bool = False) -> float:
    """CUDA: torch.cuda.max_memory_allocated since the last reset. CPU: the process's
    ru_maxrss (resident high-water mark since it started), or with address_space the VmHWM of
    /proc/self/status, the same mark kept by the address space alone: reset_peak_memory
    restarts it, and it starts afresh at exec, while ru_maxrss also keeps the marks of exited
    threads and, in a child process, the parent's size when it forked."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if address_space:
        return _proc_status_mb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _proc_status_mb(key: str) -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return float("nan")


def current_memory_mb(device: torch.device) -> float:
    """CPU: resident set size now (VmRSS); CUDA: torch.cuda.memory_allocated."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return _proc_status_mb("VmRSS")


def reset_peak_memory(device: torch.device) -> bool:
    """Restart the peak: torch.cuda.reset_peak_memory_stats, or on Linux "5" written to
    /proc/self/clear_refs, which resets VmHWM to the current resident size.
    False where that is not possible (the CPU peak then covers the whole process)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def machine() -> dict:
    """What produced the figures: CPU model, cores, threads, versions, GPU, load."""
    import transformers

    info = {
        "cpu": platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in lscpu.splitlines())
        )
        info["cpu"] = fields.get("Model name", info["cpu"])
        cores = int(fields.get("Core(s) per socket", 0)) * int(fields.get("Socket(s)", 1))
        info["physical_cores"] = cores or None
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info["load_average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info
