"""A bound on the trainer's wait for rollouts: a dead agent-loop worker or rollout server stops the run.

verl 0.9.1's synchronous sampler (``ReplayBuffer.sample``) dispatches prompts to the agent-loop workers, which
answer at once and write finished groups to TransferQueue later; the trainer then polls TransferQueue until enough
groups are finished. A worker killed in between (the OOM killer, a lost node, a segfault in an inference engine)
leaves its prompts "running" for ever, and the poll has no timeout: the run hangs, logging
``pending: 0, running: 8, finished: 0`` every minute. Ray knows the actor is dead, but nothing asks it.

``watch_rollout_actors`` wraps the sampler's wait between polls: every ``every_s`` seconds of waiting it sends each
agent-loop worker and rollout server a ping (Ray's built-in ``__ray_ready__``) and reads, without blocking, the
answers to the previous round; a ping that failed because its actor died raises ``RolloutActorDied`` naming it.
A live but busy actor simply answers later, so the check never slows or stops a run, and a dead one is reported
within two rounds of its death. A dead rollout server shows differently: the agent loop's requests to it fail at
once and verl's sampler raises "no materializable trajectories"; the watch then names the dead server. The trainer
installs it once its agent-loop manager exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

# Seconds of waiting between two rounds of pings. A round costs one trivial actor call per worker and server and
# runs only while the trainer waits anyway; a death is reported 5-10 s after the trainer starts waiting on it.
CHECK_EVERY_S = 5.0


class RolloutActorDied(RuntimeError):
    """An agent-loop worker or rollout server died while the trainer waited for its rollouts."""


# verl's sampler when every group it selected failed in the agent loop, and what that means for a user: verl's own
# message only suggests refilling the groups, which repeats the failure when its cause is in the data or the reward.
NO_TRAJECTORIES = "no materializable trajectories"
FAILED_ROLLOUTS_HINT = (
    "No rollout worker or server died: the cause is the first traceback an AgentLoopWorker printed in the log, "
    "most often a reward function that raised (an unknown data_source, a row without its ground truth, a grader "
    "error under reward.custom_reward_function.reward_kwargs.on_grader_error=fail; docs/faults-data.md)."
)


class RolloutsFailed(RuntimeError):
    """Samples of the batch failed in the agent loop while every rollout actor was alive."""


def refuse_failed_groups(replay_buffer, partition_id) -> None:
    """Raise ``RolloutsFailed`` when a prompt group of the batch just sampled has a failed sample.

    verl's synchronous sampler keeps such a group and pads its missing samples downstream, so a sample whose reward
    raised (a row without its ground truth, a grader error under ``on_grader_error=fail``) would be dropped without
    a word and the run would train on. Unless the user asked verl to replace failed groups
    (``trainer.v1.sampler.sync_refill_failed_groups=True``, an explicit choice), the run stops here instead.
    """
    if getattr(replay_buffer, "sync_refill_failed_groups", False):
        return
    failed = getattr(replay_buffer, "failure_keys", {}).get(partition_id) or set()
    if failed:
        raise RolloutsFailed(
            f"{len(failed)} prompt group(s) of this {partition_id!r} batch have samples that failed in the agent loop "
            "(verl would pad them and train on). " + FAILED_ROLLOUTS_HINT + " To drop and replace failed groups "
            "instead: trainer.v1.sampler.sync_refill_failed_groups=True."
        )


def actor_label(handle) -> str:
    """``ClassName (actor <id>)`` for a Ray actor handle (the name Ray shows in its own logs and dashboard)."""
    descriptor = getattr(handle, "_ray_actor_creation_function_descriptor", None)
    class_name = (getattr(descriptor, "class_name", None) or type(handle).__name__).rsplit(".", 1)[-1]
    actor_id = getattr(handle, "_actor_id", None)
    return f"{class_name} (actor {actor_id.hex() if actor_id is not None else '?'})"


def rollout_actors(agent_loop_manager, llm_server_manager=None) -> list[tuple[str, object]]:
    """(role, handle) of every agent-loop worker and rollout server the trainer's rollouts depend on."""
    actors = [("agent-loop worker", handle) for handle in getattr(agent_loop_manager, "agent_loop_workers", None) or []]
    if llm_server_manager is not None:
        for replica in llm_server_manager.get_replicas():
            actors += [("rollout server", handle) for handle in getattr(replica, "servers", None) or []]
    return actors


class ActorPinger:
    """Pings actors and reads the answers later, so a busy actor never blocks the caller."""

    def __init__(self):
        self.outstanding: dict = {}  # ping ref -> (role, handle)

    def poll(self, actors: Iterable[tuple[str, object]], wait_s: float = 0.0) -> tuple[str, object, str] | None:
        """Read the answers that have arrived (waiting up to ``wait_s`` for all of them), then ping every actor
        that has no ping outstanding. Returns (role, handle, Ray's error) of a dead actor, or None."""
        import ray
        from ray.exceptions import RayActorError

        if self.outstanding:
            answered, _ = ray.wait(list(self.outstanding), num_returns=len(self.outstanding), timeout=wait_s)
            for ref in answered:
                role, handle = self.outstanding.pop(ref)
                try:
                    ray.get(ref)
                except RayActorError as error:
                    return role, handle, str(error).strip().splitlines()[0]
        pinged = {id(handle) for _, handle in self.outstanding.values()}
        for role, handle in actors:
            if id(handle) not in pinged:
                self.outstanding[handle.__ray_ready__.remote()] = (role, handle)
        return None


def find_dead(actors: Iterable[tuple[str, object]], timeout_s: float = 5.0) -> tuple[str, object, str] | None:
    """(role, handle, Ray's error) of the first dead actor among ``actors``, waiting up to ``timeout_s`` for their
    answers; None if none is dead (an actor that has not answered by then counts as alive)."""
    pinger = ActorPinger()
    actors = list(actors)
    pinger.poll(actors)
    return pinger.poll(actors, wait_s=timeout_s)


def died_error(dead: tuple[str, object, str], when: str = "") -> RolloutActorDied:
    role, handle, error = dead
    return RolloutActorDied(
        f"uec-rl: the {role} {actor_label(handle)} died{when}; the step's rollouts cannot complete, so the run "
        f"stops. Ray says: {error.rstrip('.')}. Resume from the last checkpoint (trainer.resume_mode=auto with the "
        "same trainer.default_local_dir); if the process was killed for memory, lower the rollout's batch or "
        "response length first."
    )


def watch_rollout_actors(
    replay_buffer,
    actors: Callable[[], Iterable[tuple[str, object]]],
    every_s: float = CHECK_EVERY_S,
    clock: Callable[[], float] = time.monotonic,
    pinger: ActorPinger | None = None,
    find: Callable[[Iterable[tuple[str, object]]], tuple[str, object, str] | None] = find_dead,
) -> None:
    """Make ``replay_buffer``'s wait between polls ping ``actors()`` every ``every_s`` seconds of waiting and raise
    ``RolloutActorDied`` once one of them is dead; and make a failed ``sample`` say so when an actor died.

    The second case is a dead rollout server: the agent loop's requests to it fail, every group ends as a
    failure, and verl's sampler raises "no materializable trajectories" (advising to refill failed groups, which
    would fail again); the dead server is then named, with verl's error as the cause. Wraps the instance's
    ``_wait_for_next_poll`` (verl's ReplayBuffer and ReplayBufferAsync both wait there) and ``sample``;
    installing twice is a no-op.
    """
    wait = replay_buffer._wait_for_next_poll
    if getattr(wait, "_uec_watched", False):
        return
    pinger = pinger or ActorPinger()
    last_check = [clock()]

    def wait_then_check(partition_id, last_debug_time):
        result = wait(partition_id, last_debug_time)
        now = clock()
        if now - last_check[0] >= every_s:
            last_check[0] = now
            dead = pinger.poll(actors())
            if dead is not None:
                raise died_error(dead, when=f" while the trainer waited for {partition_id!r} rollouts")
        return result

    sample = replay_buffer.sample

    def sample_or_name_the_dead(*args, **kwargs):
        try:
            result = sample(*args, **kwargs)
        except RolloutActorDied:
            raise
        except Exception as error:
            dead = find(actors())
            if dead is not None:
                raise died_error(dead, when=" during the rollout") from error
            if NO_TRAJECTORIES in str(error):
                raise RolloutsFailed(
                    "every sample of the groups this step selected failed in the agent loop. " + FAILED_ROLLOUTS_HINT
                ) from error
            raise
        refuse_failed_groups(replay_buffer, kwargs.get("partition_id", args[1] if len(args) > 1 else None))
        return result

    wait_then_check._uec_watched = True
    replay_buffer._wait_for_next_poll = wait_then_check
    replay_buffer.sample = sample_or_name_the_dead
