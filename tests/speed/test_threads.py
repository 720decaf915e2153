"""Thread settings made before torch loads: passive OpenMP waits for a training, a short spin for the other commands,
threads = usable cores, the user's choice kept."""

from __future__ import annotations

import os
import subprocess
import sys

from cnnkit.machine import cgroup_cpu_quota, configure_threads, thread_settings, usable_cores


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


def test_training_waits_passively_and_other_commands_spin_briefly():
    train, predict = configure_threads({}, command="train"), configure_threads({}, command="predict")
    assert "torch" in sys.modules and train == predict == {}  # conftest loaded torch: settings come too late
    assert thread_settings("train") == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(usable_cores())}
    assert thread_settings("serve") == {"GOMP_SPINCOUNT": "10000", "OMP_NUM_THREADS": str(usable_cores())}


def run_cli_and_report(
    env: dict[str, str], command: str = "train", *, cores: str | None = None, load_torch: bool = False
) -> list[str]:
    """Run ``cnnkit COMMAND --help`` in-process in a fresh Python (optionally pinned to ``cores``), then report
    [OMP_WAIT_POLICY, GOMP_SPINCOUNT, OMP_NUM_THREADS] as the command left them (and torch's intra-op threads with
    ``load_torch``)."""
    code = (
        "import contextlib, io, os, cnnkit.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    cnnkit.cli.main([{command!r}, '--help'])\n"
        "print(*(os.environ.get(k) for k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'OMP_NUM_THREADS')))\n"
    )
    if load_torch:
        code += "import torch\nprint(torch.get_num_threads())"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    cmd = [sys.executable, "-c", code]
    if cores is not None:
        cmd = ["taskset", "-c", cores, *cmd]
    return subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True, check=True).stdout.split()


def test_the_cli_sets_a_passive_wait_for_train_and_torch_follows_it():
    cores = str(usable_cores())
    assert run_cli_and_report({}, "train", load_torch=True) == ["PASSIVE", "None", cores, cores]


def test_the_cli_sets_a_short_spin_for_one_image_commands():
    assert run_cli_and_report({}, "predict") == ["None", "10000", str(usable_cores())]


def test_the_users_own_settings_are_kept():
    assert run_cli_and_report({"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"}) == ["ACTIVE", "None", "1"]
    assert run_cli_and_report({"GOMP_SPINCOUNT": "5"}, "predict") == ["None", "5", str(usable_cores())]


def test_threads_follow_a_narrower_affinity_mask():
    if len(os.sched_getaffinity(0)) < 2:
        import pytest

        pytest.skip("needs two cores to pin to one")
    assert run_cli_and_report({}, cores="0") == ["PASSIVE", "None", "1"]
