"""
What training does differently on each kind of device (a CPU, a CUDA GPU, an Apple GPU
through MPS), one record per kind, and the choice of the device that --device names.
"""

from dataclasses import dataclass
from typing import Callable

import torch
from torch.profiler import ProfilerActivity

from safe_io import InputError


@dataclass(frozen=True)
class DeviceKind:
    name: str                # torch's name of the kind: torch.device(...).type, autocast's device_type
    label: str               # how messages name it
    auto_precision: str      # what --precision auto takes: "bf16", "fp32", or "measured" (trainer.choose_precision)
    fused_adamw: bool        # AdamW as one fused kernel
    group_cost: int          # what one more group of rows costs, in positions (trainer.length_groups)
    compile_allowed: bool    # whether --compile is taken
    batches_on_device: bool  # the datasets build batches on the device, or on the CPU to be moved
    pin_memory: bool         # a DataLoader pins its batches, for copies that do not wait
    process_group_backend: str | None  # torchrun's backend; None: torchrun is refused
    full_recipe: bool        # handout.py's auto runs the handout's full recipe, else the CPU recipe
    profiler_activity: ProfilerActivity  # what the profiler records the device's time with
    synchronize: Callable[[], None]      # wait for the work queued on the device
    # the device's own random state, which a checkpoint keeps beside torch's CPU generator
    # (None: none of its own)
    get_rng_state: Callable[[], object] | None
    set_rng_state: Callable[[object], None] | None
    table_name: Callable[[], str]        # the machine as RESULTS.md and bench.py name it


def cpu_name(threads):
    """A CPU as RESULTS.md names it, with the threads torch uses: "a CPU (1 thread)", "a CPU (2 threads)"."""
    return f"a CPU ({threads} thread{'' if threads == 1 else 's'})"


# group_cost: on 2 CPU cores, costs of 16 to 256 all run within the machine's noise of each
# other (BENCHMARKS.md); 64 it is. On a GPU one group's some hundred operator calls are kernel
# launches that cost more than a whole batch's positions, so there a batch stays one group,
# cut after its longest row, until a GPU session measures otherwise.
CPU = DeviceKind(
    name="cpu", label="CPU", auto_precision="measured", fused_adamw=False, group_cost=64, compile_allowed=True,
    batches_on_device=True, pin_memory=False, process_group_backend="gloo", full_recipe=False,
    profiler_activity=ProfilerActivity.CPU, synchronize=lambda: None, get_rng_state=None, set_rng_state=None,
    table_name=lambda: cpu_name(torch.get_num_threads()))

CUDA = DeviceKind(
    name="cuda", label="CUDA", auto_precision="bf16", fused_adamw=True, group_cost=128 * 127, compile_allowed=True,
    batches_on_device=True, pin_memory=True, process_group_backend="nccl", full_recipe=True,
    profiler_activity=ProfilerActivity.CUDA, synchronize=torch.cuda.synchronize,
    get_rng_state=torch.cuda.get_rng_state_all, set_rng_state=torch.cuda.set_rng_state_all,
    table_name=torch.cuda.get_device_name)

# Apple GPUs are not measured here (README.md), so MPS takes the safe side of each choice:
# fp32 unless bf16 is asked for, the plain AdamW, batches built on the CPU (the tests check
# the tensor code that builds them on a CPU and on CUDA only), neither torch.compile nor
# torchrun, and handout.py's CPU recipe. The profiler has no MPS activity: it sees the host.
MPS = DeviceKind(
    name="mps", label="MPS", auto_precision="fp32", fused_adamw=False, group_cost=128 * 127, compile_allowed=False,
    batches_on_device=False, pin_memory=False, process_group_backend=None, full_recipe=False,
    profiler_activity=ProfilerActivity.CPU, synchronize=torch.mps.synchronize,
    get_rng_state=torch.mps.get_rng_state, set_rng_state=torch.mps.set_rng_state,
    table_name=lambda: "an Apple GPU (MPS)")

KINDS = {kind.name: kind for kind in (CPU, CUDA, MPS)}


def kind_of(device):
    """The record of a device's kind: kind_of("cuda:1") is CUDA."""
    return KINDS[torch.device(device).type]


DEVICE_HELP = "auto (CUDA when present, else MPS, else CPU), cpu, cuda, cuda:N, mps"  # what --device takes


def resolve_device(device):
    """
    auto's choice (CUDA, else MPS, else the CPU), or the device asked for if this machine has
    it; else an InputError.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return CUDA.name
        return MPS.name if torch.backends.mps.is_available() else CPU.name
    try:
        asked = torch.device(device)
    except RuntimeError:
        raise InputError(f"--device {device!r} is not a device; give auto, cpu, cuda, cuda:N or mps") from None
    kind = KINDS.get(asked.type)
    if kind is None:
        raise InputError(f"--device {device}: this code trains on a CPU, CUDA or MPS; give auto, cpu, cuda, "
                         f"cuda:N or mps")
    count = torch.cuda.device_count()
    if kind is CUDA and (asked.index or 0) >= count:
        gpus = f", or cuda:0 to cuda:{count - 1}" if count else ""
        raise InputError(f"--device {device}: PyTorch sees {count} CUDA GPUs here; give auto or cpu{gpus}")
    if kind is MPS and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: PyTorch sees no Apple GPU (MPS) here; give auto or cpu")
    return device
