"""volnet.runtime: process settings are the user's to turn on (volnet.configure); kept freed memory makes large
temporaries stop page-faulting; `import volnet` alone changes nothing, the volnet command turns it on."""

import os
import platform
import subprocess
import sys

import pytest

import volnet
from volnet import runtime

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocates and frees a 64 MB array (above glibc's default mmap limit of 32 MiB),
# then counts the minor page faults of writing a second array of the same size.
FAULTS_OF_A_REUSED_ARRAY = """
import resource
import numpy as np
import volnet
{setup}
np.ones(16 * 2**20, dtype=np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(16 * 2**20, dtype=np.float32)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, volnet.configure()["keep_freed_memory"])
"""


def faults_of_a_reused_array(setup: str, keep: str = "1") -> tuple[int, str]:
    env = {**os.environ, runtime.ENV_SWITCH: keep}
    result = subprocess.run([sys.executable, "-c", FAULTS_OF_A_REUSED_ARRAY.format(setup=setup)], env=env,
                            capture_output=True, text=True, check=True)
    faults, kept = result.stdout.splitlines()[-1].split()  # (after what the command printed)
    return int(faults), kept


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_configure_keeps_freed_memory_so_a_second_large_array_does_not_fault():
    faults, kept = faults_of_a_reused_array("volnet.configure(keep_freed_memory=True)")
    assert faults < 20 and kept == "True"
    # Without the setting, glibc unmaps the first array and the second faults
    # page by page (or 2 MiB at a time with transparent huge pages).
    faults, kept = faults_of_a_reused_array("")  # import volnet alone: nothing changed
    assert faults >= 16 and kept == "False"


CLI = "from volnet.cli import main; assert main(['summary', 'lenet', '--input', '28x28x1']) == 0"


@pytest.mark.slow
@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_volnet_command_turns_it_on_unless_the_environment_says_0():
    assert faults_of_a_reused_array(CLI)[1] == "True"
    assert faults_of_a_reused_array(CLI, keep="0")[1] == "False"


def test_configure_reports_the_settings_in_effect_and_cannot_turn_kept_memory_off(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "_settings", {"keep_freed_memory": False})
    monkeypatch.setattr(runtime, "_keep_freed_memory", lambda: calls.append("mallopt") or True)
    assert volnet.configure() == {"keep_freed_memory": False} and calls == []
    assert volnet.configure(keep_freed_memory=False) == {"keep_freed_memory": False}  # off stays off
    assert volnet.configure(keep_freed_memory=True) == {"keep_freed_memory": True}
    assert volnet.configure(keep_freed_memory=True) == {"keep_freed_memory": True} and calls == ["mallopt"]
    with pytest.raises(ValueError, match="cannot be turned off"):
        volnet.configure(keep_freed_memory=False)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_keep_freed_memory_reports_that_glibc_agreed():
    assert runtime.keep_freed_memory() is True


def test_switch_off_by_environment(monkeypatch):
    monkeypatch.setattr(runtime, "_settings", {"keep_freed_memory": False})
    monkeypatch.setattr(runtime, "_keep_freed_memory", lambda: pytest.fail("mallopt called"))
    monkeypatch.setenv(runtime.ENV_SWITCH, "0")
    assert runtime.configure_from_environment() is False
