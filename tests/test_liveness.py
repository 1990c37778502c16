"""The bound on the trainer's wait for rollouts (uec_recipe/liveness.py): dead actors are found, busy ones are not
taken for dead, and the check runs between the sampler's polls at most every so often."""

from __future__ import annotations

import time

import pytest

from uec_recipe.liveness import RolloutActorDied, RolloutsFailed, died_error, find_dead, watch_rollout_actors


class FakeSampler:
    """verl's ReplayBuffer as the watch sees it: a wait between polls that returns the debug timestamp, a
    ``sample`` that fails as verl's does when every group of the step failed, and the failed groups it keeps."""

    def __init__(self, failed=(), refill=False):
        self.waits = 0
        self.failure_keys = {"train": set(failed)}
        self.sync_refill_failed_groups = refill

    def sample(self, global_steps, partition_id, batch_size):
        if global_steps == 3:
            raise RuntimeError("Sync replay buffer selected terminal groups with no materializable trajectories.")
        return "batch", {}

    def _wait_for_next_poll(self, partition_id, last_debug_time):
        self.waits += 1
        return last_debug_time + 1


class FakePinger:
    """Records each round of pings; reports the actor dead from a given time on."""

    def __init__(self, now, dead_from):
        self.now, self.dead_from, self.rounds = now, dead_from, []

    def poll(self, actors):
        self.rounds.append((self.now[0], list(actors)))
        return ("agent-loop worker", "w0", "ActorDiedError: gone") if self.now[0] >= self.dead_from else None


def test_the_check_runs_between_polls_at_most_every_so_often_and_raises_through_the_wait():
    sampler, now = FakeSampler(), [0.0]
    pinger = FakePinger(now, dead_from=30)
    actors = lambda: [("agent-loop worker", "w0")]  # noqa: E731
    watch_rollout_actors(sampler, actors, every_s=10, clock=lambda: now[0], pinger=pinger)
    watch_rollout_actors(sampler, lambda: [], every_s=1, clock=lambda: now[0], pinger=pinger)  # again: a no-op
    for second in range(0, 30, 2):
        now[0] = float(second)
        assert sampler._wait_for_next_poll("train", 5.0) == 6.0  # verl's own wait still runs and returns
    assert pinger.rounds == [(10.0, [("agent-loop worker", "w0")]), (20.0, [("agent-loop worker", "w0")])]
    now[0] = 30.0
    with pytest.raises(RolloutActorDied, match="the agent-loop worker .* died while the trainer waited for 'train'"):
        sampler._wait_for_next_poll("train", 0.0)
    assert sampler.waits == 16


def test_a_failed_sample_names_a_dead_actor_or_says_where_the_failure_is():
    sampler, dead = FakeSampler(), [None]
    watch_rollout_actors(sampler, lambda: [("rollout server", "s0")], find=lambda actors: dead[0])
    assert sampler.sample(global_steps=2, partition_id="train", batch_size=8) == ("batch", {})
    with pytest.raises(RolloutsFailed, match="first traceback an AgentLoopWorker printed") as caught:
        sampler.sample(global_steps=3, partition_id="train", batch_size=8)  # nothing died: where to look, with why
    assert "no materializable trajectories" in str(caught.value.__cause__)
    dead[0] = ("rollout server", "s0", "ActorDiedError: The actor died unexpectedly")
    with pytest.raises(RolloutActorDied, match="the rollout server .* died during the rollout") as caught:
        sampler.sample(global_steps=3, partition_id="train", batch_size=8)
    assert "no materializable trajectories" in str(caught.value.__cause__)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.faults  # a local Ray instance takes ~20 s to start on a busy 2-core machine
def test_a_killed_actor_is_named_and_a_busy_one_is_not_taken_for_dead(ray_local):
    ray = ray_local

    @ray.remote
    class Busy:
        def block(self, seconds):
            time.sleep(seconds)

    @ray.remote
    class Worker:
        def ping(self):
            return 1

    busy, worker = Busy.remote(), Worker.remote()
    ray.get(worker.ping.remote())
    busy.block.remote(30)  # a threaded actor of one thread: the ping waits behind this call
    actors = [("rollout server", busy), ("agent-loop worker", worker)]
    started = time.monotonic()
    assert find_dead(actors, timeout_s=1.0) is None
    assert time.monotonic() - started < 10
    ray.kill(worker, no_restart=True)
    dead = find_dead(actors, timeout_s=5.0)
    assert dead is not None and dead[1] is worker
    message = str(died_error(dead, when=" while the trainer waited for 'train' rollouts"))
    assert f"agent-loop worker Worker (actor {worker._actor_id.hex()}) died while the trainer waited" in message
    assert "trainer.resume_mode=auto" in message


def test_a_batch_with_failed_groups_stops_the_run_unless_verl_is_asked_to_refill():
    sampler = FakeSampler(failed={"uid-7"})
    watch_rollout_actors(sampler, lambda: [], find=lambda actors: None)
    with pytest.raises(RolloutsFailed, match="1 prompt group\\(s\\) of this 'train' batch have samples that failed"):
        sampler.sample(global_steps=2, partition_id="train", batch_size=8)
    with pytest.raises(RolloutsFailed, match="sync_refill_failed_groups=True"):
        sampler.sample(2, "train", 8)  # verl calls it positionally too
    assert sampler.sample(2, "val", 8) == ("batch", {})  # no failed group in that partition
    refilling = FakeSampler(failed={"uid-7"}, refill=True)  # the user's explicit choice: verl replaces them
    watch_rollout_actors(refilling, lambda: [], find=lambda actors: None)
    assert refilling.sample(2, "train", 8) == ("batch", {})
