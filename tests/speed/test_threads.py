"""Thread settings made before torch loads: passive OpenMP waits, threads = usable cores, the user's choice kept."""

from __future__ import annotations

import os
import subprocess
import sys

from cnnkit.machine import cgroup_cpu_quota, configure_threads, usable_cores


def test_a_cgroup_quota_is_read_in_whole_cpus(tmp_path):
    f = tmp_path / "cpu.max"
    f.write_text("150000 100000\n")
    assert cgroup_cpu_quota(f) == 2  # 1.5 CPUs of time: two threads, not one
    f.write_text("50000 100000\n")
    assert cgroup_cpu_quota(f) == 1
    f.write_text("max 100000\n")
    assert cgroup_cpu_quota(f) is None
    f.write_text("garbage")
    assert cgroup_cpu_quota(f) is None
    assert cgroup_cpu_quota(tmp_path / "missing") is None


def test_usable_cores_follow_the_affinity_mask():
    assert 1 <= usable_cores() <= len(os.sched_getaffinity(0))


def test_torch_already_loaded_means_nothing_is_set():
    env: dict[str, str] = {}
    assert "torch" in sys.modules  # conftest imported it
    assert configure_threads(env) == {} and env == {}


def run_cli_and_report(env: dict[str, str], *, cores: str | None = None, load_torch: bool = False) -> list[str]:
    """Import ``cnnkit.cli`` in a fresh process (optionally pinned to ``cores``)
    -> [OMP_WAIT_POLICY, OMP_NUM_THREADS] (and torch's intra-op threads with ``load_torch``)."""
    code = "import cnnkit.cli, os\nprint(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OMP_NUM_THREADS'))\n"
    if load_torch:
        code += "import torch\nprint(torch.get_num_threads())"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    cmd = [sys.executable, "-c", code]
    if cores is not None:
        cmd = ["taskset", "-c", cores, *cmd]
    return subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True, check=True).stdout.split()


def test_the_cli_sets_a_passive_wait_and_torch_follows_it():
    assert run_cli_and_report({}, load_torch=True) == ["PASSIVE", str(usable_cores()), str(usable_cores())]


def test_the_users_own_settings_are_kept():
    assert run_cli_and_report({"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"}) == ["ACTIVE", "1"]


def test_threads_follow_a_narrower_affinity_mask():
    if len(os.sched_getaffinity(0)) < 2:
        import pytest

        pytest.skip("needs two cores to pin to one")
    assert run_cli_and_report({}, cores="0") == ["PASSIVE", "1"]
