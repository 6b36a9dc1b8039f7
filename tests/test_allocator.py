"""
allocator.py: which allocator and environment run.py starts itself again in, that the restarted
process has the allocator, and that training under it gives the same params to the last bit.
"""

import os
import subprocess
import sys

import pytest

import allocator
from allocator import installed_allocator, preloading
from conftest import ROOT

FAST_ALLOCATOR = installed_allocator() if sys.platform.startswith("linux") else None
needs_allocator = pytest.mark.skipif(FAST_ALLOCATOR is None, reason="neither tcmalloc nor jemalloc on this machine "
                                                                    "(Debian: libtcmalloc-minimal4, libjemalloc2)")


def test_preloading_adds_the_library_to_an_environment_without_ld_preload():
    environment = {"PATH": "/usr/bin", "OMP_NUM_THREADS": "1"}
    assert preloading(environment, "libjemalloc.so.2") == {"PATH": "/usr/bin", "OMP_NUM_THREADS": "1",
                                                            "LD_PRELOAD": "libjemalloc.so.2"}
    assert "LD_PRELOAD" not in environment  # a new dict: os.environ is not changed in place


@pytest.mark.parametrize("preload", ["", "libtcmalloc_minimal.so.4", "/usr/lib/libjemalloc.so.2"])
def test_preloading_leaves_an_ld_preload_already_set_even_empty(preload):
    assert preloading({"LD_PRELOAD": preload}, "libjemalloc.so.2") is None


def test_preloading_without_the_library_goes_on_as_it_is():
    assert preloading({"PATH": "/usr/bin"}, None) is None


@pytest.mark.parametrize("system, chosen", [
    ({"tcmalloc_minimal": "libtcmalloc_minimal.so.4", "jemalloc": "libjemalloc.so.2"}, "libtcmalloc_minimal.so.4"),
    ({"jemalloc": "libjemalloc.so.2"}, "libjemalloc.so.2"),
    ({"tcmalloc_minimal": "libtcmalloc_minimal.so.4"}, "libtcmalloc_minimal.so.4"),
    ({}, None),
])
def test_the_faster_allocator_the_system_has_is_chosen(monkeypatch, system, chosen):
    monkeypatch.setattr(allocator.ctypes.util, "find_library", system.get)
    assert installed_allocator() == chosen


def environment_with(**preload):
    """This process's environment, with LD_PRELOAD as given or (by default) unset."""
    return {**{key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}, **preload}


def allocator_in_use(tmp_path, **environment):
    """
    LD_PRELOAD, whether FAST_ALLOCATOR is mapped, the -W options and the arguments, in a process
    that called restart_with_fast_allocator.
    """
    mapped = FAST_ALLOCATOR.split(".so")[0] + ".so"  # libtcmalloc_minimal.so.4 maps as ...minimal.so.4.5.10
    script = tmp_path / "which_malloc.py"
    script.write_text(f"import os, sys\nsys.path.insert(0, {str(ROOT / 'src')!r})\nimport allocator\n"
                      "allocator.restart_with_fast_allocator()\n"
                      f"print(repr(os.environ.get('LD_PRELOAD')), {mapped!r} in open('/proc/self/maps').read(),\n"
                      "      sys.warnoptions, sys.argv[1:])\n")
    # the interpreter's -W and the script's argument: the interpreter's flags survive the restart
    result = subprocess.run([sys.executable, "-W", "error::FutureWarning", str(script), "--flag", "x"],
                            env=environment_with(**environment), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@needs_allocator
def test_a_process_restarts_itself_under_the_allocator_once_and_an_empty_ld_preload_keeps_glibc(tmp_path):
    flags = "['error::FutureWarning'] ['--flag', 'x']"
    assert allocator_in_use(tmp_path) == f"{FAST_ALLOCATOR!r} True {flags}"
    assert allocator_in_use(tmp_path, LD_PRELOAD="") == f"'' False {flags}"


@needs_allocator
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_under_the_allocator_gives_the_same_params_as_under_glibc(tmp_path, precision):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Person {i}. Person {i} was born in Town {i % 7}, and lived by the sea."
                                for i in range(40)), encoding="utf-8")
    params = {}
    for name, environment in (("fast", {}), ("glibc", {"LD_PRELOAD": ""})):
        params[name] = tmp_path / f"{name}.params"
        result = subprocess.run([sys.executable, "src/run.py", "pretrain", "vanilla", str(corpus),
                                 "--writing_params_path", str(params[name]), "--max_epochs", "2", "--batch_size",
                                 "8", "--device", "cpu", "--precision", precision],
                                cwd=ROOT, env=environment_with(**environment), capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
    assert params["fast"].read_bytes() == params["glibc"].read_bytes()
