"""Faults a cluster run meets, with the real CPU trainer: each ends in a clear message, and the run resumes from
its last good checkpoint with its buffers (docs/faults.md says what a user sees and does for each).

* a corrupted UEC state: resume refuses it by name before Ray starts (the entry point's ``check_resume_state``; it
  reuses uec_run's checkpoints and takes seconds, so it runs in the default suite);
* a full disk during a checkpoint save, on a real size-limited tmpfs, then a rerun that resumes (marker ``faults``);
* an agent-loop worker killed mid-step: the run exits non-zero within a bounded time, naming the dead actor, and
  a rerun resumes (marker ``faults``); likewise the rollout server (marker ``faults``, no rerun).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from uec_lab.summary import read_metrics
from uec_recipe.checkpoint import STATE_FILE, read_state

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]

# conftest.SMALL and conftest.UEC_RUN (the verl wheel's own `tests` package makes conftest unimportable by name)
SMALL = [
    "data.train_batch_size=8",
    "actor_rollout_ref.actor.ppo_mini_batch_size=8",
    "actor_rollout_ref.rollout.top_p=1.0",
    "uec.replay.adv_threshold=0.0",
    "uec.replay.frequency=2",
    "trainer.val_before_train=False",
    "data.filter_overlong_prompts=False",
]


class Run:
    """One quickstart run in the background: its process tree can be inspected and its log read."""

    def __init__(self, out: Path, steps: int, overrides=(), env_extra=None):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "UEC_ROLLOUT_REQUEST_LOG": str(out / "rollout_requests.jsonl"), **(env_extra or {})}
        cmd = [
            "bash",
            str(REPO / "run_scripts/quickstart_cpu.sh"),
            "--steps",
            str(steps),
            "--algo",
            "uec",
            "--task",
            "digits",
        ]
        cmd += ["--out", str(out), "--", *SMALL, *overrides]
        self.console = open(out / "console.log", "w")
        # its own session: everything the run starts (Ray's services and workers included) can be ended by group
        self.process = subprocess.Popen(
            cmd, stdout=self.console, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.started = time.monotonic()

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the run is still going after ``timeout`` seconds (then it is ended)."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # Ray's own daemons double-fork out of the session only when started by `ray start`; ray.init keeps them
        # as descendants, which the group kill above ends.
        self.console.close()

    def log(self) -> str:
        parts = [(self.out / name) for name in ("console.log", "train.log")]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.exists())

    def descendants(self, title: str) -> list[psutil.Process]:
        """Processes of this run (and no other) whose command line contains ``title``, e.g. a Ray actor's class."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for child in children:
            try:
                if title in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.NoSuchProcess:
                continue
        return found

    def trained_steps(self) -> list[int]:
        """The training steps this run logged (the quickstart starts each run's metrics.jsonl afresh)."""
        path = self.out / "metrics.jsonl"
        return [row["step"] for row in read_metrics(path) if row["step"] >= 1] if path.exists() else []


def copy_checkpoints(source: Path, out: Path) -> Path:
    shutil.copytree(source / "checkpoints", out / "checkpoints")
    return out / "checkpoints"


def uec_state_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith("uec_state."))


# ---- a corrupted UEC state (one run that stops at resume) --------------------------------------------------------


def test_a_corrupted_buffer_shard_is_refused_by_name_before_any_training(uec_run, uec_run_settings, tmp_path):
    _, _, first_out = uec_run
    root = copy_checkpoints(first_out, tmp_path)
    assert (root / "latest_checkpointed_iteration.txt").read_text().strip() == "4"
    shard = next(p for p in uec_state_files(root / "global_step_4") if ".batch_buffer." in p.name)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # as a copy cut short, or a disk that lost the file's tail

    run = Run(tmp_path, steps=6, overrides=[*uec_run_settings["overrides"], "trainer.resume_mode=auto"])
    code = run.wait(timeout=900)
    log = run.log()
    assert code not in (None, 0), "the run resumed a damaged state"
    assert f"{shard.name} has {len(data) // 2} bytes where {len(data)} were written" in log
    assert f"trainer.resume_mode=resume_path trainer.resume_from_path={root / 'global_step_2'}" in log
    # refused by the entry point's checks, before Ray starts and before any training step
    assert run.trained_steps() == [] and "[uec] step " not in log
    assert "Started a local Ray instance" not in log


# ---- a full disk during a checkpoint save (marker faults: two runs) ---------------------------------------------


def used_bytes(mount: Path) -> int:
    stats = os.statvfs(mount)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs mounted at ``tmp_path/out/checkpoints`` (where the quickstart saves), resized by the test."""
    mount = tmp_path / "out" / "checkpoints"
    mount.mkdir(parents=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")

    def resize(size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True, capture_output=True)

    yield mount, resize
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.faults
def test_a_disk_that_fills_during_a_save_keeps_the_previous_checkpoint_resumable(uec_run_settings, small_disk):
    mount, resize = small_disk
    out = mount.parent
    overrides = [*uec_run_settings["overrides"]]  # saves at steps 2 and 4
    run = Run(out, steps=4, overrides=overrides)
    tracker = mount / "latest_checkpointed_iteration.txt"
    deadline = time.monotonic() + 900
    while not (tracker.exists() and tracker.read_text().strip() == "2"):
        assert run.process.poll() is None and time.monotonic() < deadline, run.log()[-3000:]
        time.sleep(0.1)
    # step 2 is saved: leave 64 KiB free, less than the step-4 save needs
    resize(used_bytes(mount) + 64 * 1024)
    code = run.wait(timeout=600)
    log = run.log()
    assert code not in (None, 0), "the step-4 save succeeded on a full disk"
    assert "No space left on device" in log and "uec-rl: could not write" in log
    # the step-4 save failed: step 4 trained, but verl logs a step's metrics after its save
    assert run.trained_steps() == [1, 2, 3]
    # the previous checkpoint, with its UEC state, is whole; nothing half-written is left as a state
    assert tracker.read_text().strip() == "2"
    saved = read_state(mount / "global_step_2" / STATE_FILE)  # checks every file's size and checksum
    assert saved["global_steps"] == 2
    assert not (mount / "global_step_4" / STATE_FILE).exists()
    assert not [p for p in (mount / "global_step_4").glob(".*.tmp")]

    # space is freed; the same command resumes from step 2 with its buffers
    resize(2 * 1024**3)
    batch, replay = (len(saved["buffers"][name]["records"]) for name in ("batch_buffer", "replay_buffer"))
    rerun = Run(out, steps=4, overrides=[*overrides, "trainer.resume_mode=auto"])
    assert rerun.wait(timeout=900) == 0, rerun.log()[-4000:]
    log = rerun.log()
    assert f"[uec] restored {batch} batch-buffer rows and {replay} replay rows" in log
    assert rerun.trained_steps() == [3, 4]
    assert tracker.read_text().strip() == "4" and read_state(mount / "global_step_4" / STATE_FILE) is not None


# ---- an agent-loop worker or the rollout server killed mid-step (marker faults) ----------------------------------


def kill_during_step_3_rollout(run: Run, process_title: str) -> float:
    """Wait for the step-2 checkpoint, then SIGKILL this run's ``process_title`` process as soon as step 3's first
    request reaches the rollout server (the rest of the step's requests are then in flight). Returns the time."""
    tracker = run.out / "checkpoints" / "latest_checkpointed_iteration.txt"
    requests = run.out / "rollout_requests.jsonl"
    deadline = time.monotonic() + 900
    while not (tracker.exists() and tracker.read_text().strip() == "2"):
        assert run.process.poll() is None and time.monotonic() < deadline, run.log()[-3000:]
        time.sleep(0.05)
    seen = requests.stat().st_size
    while not any('"generate"' in line for line in requests.read_text()[seen:].splitlines()):
        assert run.process.poll() is None and time.monotonic() < deadline, run.log()[-3000:]
        time.sleep(0.01)
    (victim,) = run.descendants(process_title)
    victim.kill()
    return time.monotonic()


@pytest.mark.faults
def test_a_worker_killed_mid_step_stops_the_run_naming_it_and_the_run_resumes(uec_run_settings, tmp_path):
    overrides = [*uec_run_settings["overrides"]]  # saves at step 2
    run = Run(tmp_path, steps=4, overrides=overrides)
    killed = kill_during_step_3_rollout(run, "ray::AgentLoopWorker")
    code = run.wait(timeout=180)
    # without the liveness watch verl's sampler polls for the dead worker's prompts for ever
    assert code is not None, "the run hung after its agent-loop worker died"
    assert code != 0 and time.monotonic() - killed < 180
    log = run.log()
    assert "uec-rl: the agent-loop worker AgentLoopWorkerTQ (actor " in log and " died" in log
    assert run.trained_steps() == [1, 2]

    rerun = Run(tmp_path, steps=4, overrides=[*overrides, "trainer.resume_mode=auto"])
    assert rerun.wait(timeout=900) == 0, rerun.log()[-4000:]
    assert "[uec] restored " in rerun.log() and rerun.trained_steps() == [3, 4]


@pytest.mark.faults
def test_a_rollout_server_killed_mid_step_stops_the_run_naming_it(uec_run_settings, tmp_path):
    run = Run(tmp_path, steps=4, overrides=[*uec_run_settings["overrides"]])
    killed = kill_during_step_3_rollout(run, "ray::HFGenerationServer")
    code = run.wait(timeout=180)
    assert code not in (None, 0) and time.monotonic() - killed < 180
    log = run.log()
    # verl's own error ("no materializable trajectories") stays in the log as the cause; ours names the server
    assert "uec-rl: the rollout server HFGenerationServer (actor " in log and "died during the rollout" in log
    assert run.trained_steps() == [1, 2]


# ---- faults in the data and the reward (docs/faults-data.md) -------------------------------------------------------


def test_a_train_file_with_a_row_without_ground_truth_is_refused_by_file_and_row_before_ray(demo, tmp_path):
    import pandas as pd

    frame = pd.read_parquet(demo.train_file)
    row = len(frame) - 5  # near the end: a row the first steps never draw, met only in a later epoch
    frame.at[row, "reward_model"] = {"style": "rule", "ground_truth": ""}
    bad = tmp_path / "train.parquet"
    frame.to_parquet(bad)
    run = Run(tmp_path / "run", steps=2, overrides=[f"data.train_files={bad}"])
    code = run.wait(timeout=300)
    log = run.log()
    assert code not in (None, 0), "the run started on a row without ground truth"
    assert f"{bad}: column 'reward_model.ground_truth': missing or empty ground truth at row(s) {row}" in log
    assert "Started a local Ray instance" not in log and run.trained_steps() == []


# A reward file of the kind docs/faults-data.md describes: the demo's grader, raising on every answer whose gold sum
# is a multiple of 7 (about one prompt in seven), as a grader bug on some rows would.
FLAKY_REWARD = """
from uec_lab.demo.reward import compute_score, grade_digit_sum  # registers the demo's graders
from uec_recipe.reward import register_grader


def flaky(solution_str, ground_truth, extra_info=None, grader="paper"):
    if int(ground_truth) % 7 == 0:
        raise ArithmeticError("a grader bug on this row")
    return grade_digit_sum(solution_str, ground_truth, extra_info, grader)


register_grader("uec_demo/digit_sum", flaky)
"""


@pytest.mark.faults
@pytest.mark.parametrize("policy", ["fail", "zero"])
def test_a_grader_that_raises_follows_the_policy(policy, tmp_path):
    reward = tmp_path / "flaky_reward.py"
    reward.write_text(FLAKY_REWARD)
    overrides = [
        f"reward.custom_reward_function.path={reward}",
        f"reward.custom_reward_function.reward_kwargs.on_grader_error={policy}",
        "reward.custom_reward_function.reward_kwargs.max_grader_error_rate=0.9",
    ]
    run = Run(tmp_path / "run", steps=2, overrides=overrides)
    code = run.wait(timeout=900)
    log = run.log()
    if policy == "fail":
        # the reward's own error names the row; the run ends on it, not on verl's advice to refill failed groups
        assert code not in (None, 0), "a grader error under on_grader_error=fail did not stop the run"
        # (verl's sampler would pad the failed samples and train on: the trainer refuses the batch)
        assert "a grader bug on this row" in log and "uec_demo/digit_sum" in log
        assert "RolloutsFailed" in log and "have samples that failed in the agent loop" in log
        assert run.trained_steps() == []
    else:
        assert code == 0, log[-4000:]
        rows = [row for row in read_metrics(run.out / "metrics.jsonl") if row["step"] >= 1]
        assert [row["step"] for row in rows] == [1, 2]
        shares = [row["reward/grader_error_rate"] for row in rows]
        # every step reports the count; some prompts' sums are multiples of 7, and the share stays under the threshold
        assert all(0 <= share < 0.9 for share in shares) and sum(shares) > 0, shares
