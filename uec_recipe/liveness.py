"""A bound on the trainer's wait for rollouts: a dead agent-loop worker or rollout server stops the run.

verl 0.9.1's synchronous sampler (``ReplayBuffer.sample``) dispatches prompts to the agent-loop workers, which
answer at once and write finished groups to TransferQueue later; the trainer then polls TransferQueue until enough
groups are finished. A worker killed in between (the OOM killer, a lost node, a segfault in an inference engine)
leaves its prompts "running" for ever, and the poll has no timeout: the run hangs, logging
``pending: 0, running: 8, finished: 0`` every minute. Ray knows the actor is dead, but nothing asks it.

``watch_rollout_actors`` wraps the sampler's wait between polls: at most every ``every_s`` seconds of waiting it
pings the agent-loop workers and rollout servers (Ray's built-in ``__ray_ready__``) and raises
``RolloutActorDied`` naming the first dead one. A live but busy actor (an inference engine generating) may not
answer within ``ping_timeout_s``; that counts as alive, so the check never stops a slow run. The trainer
installs it once its agent-loop manager exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

# Seconds of waiting between two liveness checks, and how long one check waits for answers. A check costs one
# trivial actor call per worker and server, and runs only while the trainer is waiting anyway.
CHECK_EVERY_S = 10.0
PING_TIMEOUT_S = 5.0


class RolloutActorDied(RuntimeError):
    """An agent-loop worker or rollout server died while the trainer waited for its rollouts."""


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


def find_dead(
    actors: Iterable[tuple[str, object]], timeout_s: float = PING_TIMEOUT_S
) -> tuple[str, object, str] | None:
    """(role, handle, Ray's error) of the first actor that is dead, or None. Unanswered pings count as alive."""
    import ray
    from ray.exceptions import RayActorError

    actors = list(actors)
    if not actors:
        return None
    pings = {handle.__ray_ready__.remote(): (role, handle) for role, handle in actors}
    answered, _ = ray.wait(list(pings), num_returns=len(pings), timeout=timeout_s)
    for ref in answered:
        try:
            ray.get(ref)
        except RayActorError as error:
            role, handle = pings[ref]
            return role, handle, str(error).strip().splitlines()[0]
    return None


def check_alive(actors: Iterable[tuple[str, object]], timeout_s: float = PING_TIMEOUT_S, when: str = "") -> None:
    """Raise ``RolloutActorDied`` naming the first dead actor."""
    dead = find_dead(actors, timeout_s)
    if dead is None:
        return
    role, handle, error = dead
    raise RolloutActorDied(
        f"uec-rl: the {role} {actor_label(handle)} died{when}, so the rollouts it held will never finish; stopping "
        f"instead of waiting for ever. Ray says: {error}. Resume from the last checkpoint (trainer.resume_mode=auto "
        "with the same trainer.default_local_dir); if the process was killed for memory, lower the rollout's "
        "batch or response length first."
    )


def watch_rollout_actors(
    replay_buffer,
    actors: Callable[[], Iterable[tuple[str, object]]],
    every_s: float = CHECK_EVERY_S,
    timeout_s: float = PING_TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
    check: Callable[..., None] = check_alive,
) -> None:
    """Make ``replay_buffer``'s wait between polls check ``actors()`` at most every ``every_s`` seconds of waiting.

    Wraps the instance's ``_wait_for_next_poll`` (verl's ReplayBuffer and ReplayBufferAsync both wait there);
    installing twice is a no-op.
    """
    wait = replay_buffer._wait_for_next_poll
    if getattr(wait, "_uec_watched", False):
        return
    last_check = [clock()]

    def wait_then_check(partition_id, last_debug_time):
        result = wait(partition_id, last_debug_time)
        now = clock()
        if now - last_check[0] >= every_s:
            last_check[0] = now
            check(actors(), timeout_s, when=f" while the trainer waited for {partition_id!r} rollouts")
        return result

    wait_then_check._uec_watched = True
    replay_buffer._wait_for_next_poll = wait_then_check
