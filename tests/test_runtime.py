"""volnet.runtime: freed memory is kept for reuse, so large temporaries stop page-faulting."""

import os
import platform
import subprocess
import sys

import pytest

from volnet import runtime

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocates and frees a 64 MB array (above glibc's default mmap limit of 32 MiB),
# then counts the minor page faults of writing a second array of the same size.
FAULTS_OF_A_REUSED_ARRAY = """
import resource
import numpy as np
import volnet
np.ones(16 * 2**20, dtype=np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(16 * 2**20, dtype=np.float32)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_of_a_reused_array(keep: str) -> int:
    env = {**os.environ, runtime.ENV_SWITCH: keep}
    result = subprocess.run([sys.executable, "-c", FAULTS_OF_A_REUSED_ARRAY], env=env, capture_output=True,
                            text=True, check=True)
    return int(result.stdout)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_import_keeps_freed_memory_so_a_second_large_array_does_not_fault():
    assert faults_of_a_reused_array("1") < 20
    # Without the setting, glibc unmaps the first array and the second faults
    # page by page (or 2 MiB at a time with transparent huge pages).
    assert faults_of_a_reused_array("0") >= 16


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_keep_freed_memory_reports_that_glibc_agreed():
    assert runtime.keep_freed_memory() is True


def test_switch_off_by_environment(monkeypatch):
    monkeypatch.setenv(runtime.ENV_SWITCH, "0")
    assert runtime.configure_from_environment() is False
