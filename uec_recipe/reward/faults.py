"""What the reward does with a row it cannot score: no ground truth, or a grader that raises (docs/faults-data.md).

verl 0.9.1's reward loop (``verl/experimental/reward_loop/reward_manager/naive.py``, ``run_single``) hands
``reward_model.ground_truth`` to ``compute_score`` as it is, ``None`` included, and catches nothing: an exception
travels through ``asyncio.gather`` in the reward worker and ``ray.get`` in the trainer and ends the run with a long
Ray traceback, while a ``None`` ground truth would simply be graded (``str(None)`` = "None") and earn a silent 0.

* A missing or empty ground truth is a data fault, never scored: the error names the data source, the row's
  ``extra_info`` split and index, and how to find every such row of the file before training.
* A grader that raises on a sample follows ``reward.custom_reward_function.reward_kwargs.on_grader_error``:
  ``fail`` (the default: the run stops, naming the row, the grader and the setting) or ``zero`` (the sample scores
  0 with ``grader_error`` = 1 in its reward_extra_info, a warning is logged, and the run stops once more than
  ``max_grader_error_rate`` of the samples this reward worker has scored raised, counted from
  ``GRADER_ERROR_MIN_COUNT`` errors on). Errors that say the setup is wrong - unknown data source, a registered
  grader returning the wrong type, a broken math-verify pool - always stop the run: scoring them 0 would train on
  wrong rewards for the whole run.
"""

from __future__ import annotations

import logging
import math
import threading

ON_GRADER_ERROR = ("fail", "zero")
DEFAULT_ON_GRADER_ERROR = "fail"
DEFAULT_MAX_GRADER_ERROR_RATE = 0.01
# With fewer errors than this the rate is not judged: one early error among a handful of samples says nothing about
# the grader, ten say it is broken for some kind of answer.
GRADER_ERROR_MIN_COUNT = 10
# Tracebacks logged in full per process; after that every WARN_EVERY-th error gets one line with the running count.
WARN_FIRST = 5
WARN_EVERY = 100
GRADER_ERROR_KEY = "grader_error"

logger = logging.getLogger("uec_recipe.reward")


class MissingGroundTruthError(ValueError):
    """A row whose ``reward_model.ground_truth`` is missing or empty reached the reward."""


class GraderError(RuntimeError):
    """A grader raised on one sample and the policy is ``fail``."""


class GraderErrorRateExceeded(RuntimeError):
    """Under ``on_grader_error=zero``, more samples raised than ``max_grader_error_rate`` allows."""


def row_label(data_source, extra_info) -> str:
    """The row as the reward sees it: data source and the ``extra_info`` fields that locate it in its split."""
    info = extra_info if isinstance(extra_info, dict) else {}
    where = ", ".join(f"{key}={info[key]!r}" for key in ("split", "index", "uid") if info.get(key) is not None)
    return f"data_source {str(data_source)!r}, extra_info {where or '(no split/index)'}"


def _is_missing(ground_truth) -> bool:
    if ground_truth is None:
        return True
    if isinstance(ground_truth, float) and math.isnan(ground_truth):  # pandas' missing value
        return True
    return isinstance(ground_truth, str | bytes) and not ground_truth.strip()


def check_ground_truth(data_source, ground_truth, extra_info) -> str:
    """The ground truth as a string; a missing or blank one raises ``MissingGroundTruthError`` naming the row."""
    if _is_missing(ground_truth):
        raise MissingGroundTruthError(
            f"uec_recipe.reward: a row without a ground truth ({row_label(data_source, extra_info)}): "
            f"reward_model.ground_truth is {ground_truth!r}; scoring it would give a silent 0 reward. Fill that row's "
            "reward_model.ground_truth, or drop the row, in the data file; `python -m uec_recipe.data_schema FILE` "
            "names every such row of a file with its row number (main_uec runs the same check on data.train_files "
            "and data.val_files before training starts)."
        )
    return ground_truth if isinstance(ground_truth, str) else str(ground_truth)


def check_policy(on_grader_error: str, max_grader_error_rate) -> None:
    if on_grader_error not in ON_GRADER_ERROR:
        raise ValueError(
            f"uec_recipe.reward: on_grader_error must be one of {ON_GRADER_ERROR}, got {on_grader_error!r}; set it "
            "with reward.custom_reward_function.reward_kwargs.on_grader_error=... (+ in front with verl's own "
            "main_ppo, whose config lacks the key)."
        )
    if (
        isinstance(max_grader_error_rate, bool)
        or not isinstance(max_grader_error_rate, int | float)
        or not 0.0 <= max_grader_error_rate < 1.0
    ):
        raise ValueError(
            "uec_recipe.reward: max_grader_error_rate must be a fraction in [0, 1), got "
            f"{max_grader_error_rate!r}; set it with reward.custom_reward_function.reward_kwargs.max_grader_error_rate="
        )


def grader_name(fn) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def fail_on_grader_error(error: Exception, data_source, extra_info, grader: str) -> GraderError:
    return GraderError(
        f"uec_recipe.reward: the {grader} raised on a sample ({row_label(data_source, extra_info)}): "
        f"{type(error).__name__}: {error}. The run stops because "
        "reward.custom_reward_function.reward_kwargs.on_grader_error is 'fail' (the default). Fix the grader, or set "
        "on_grader_error=zero to score such samples 0, count them in reward_extra_info['grader_error'] and stop only "
        "when more than max_grader_error_rate of them raise (docs/faults-data.md)."
    )


class GraderErrorCounter:
    """Samples scored and samples whose grader raised, in this process (one per reward worker: verl runs the reward
    function in each worker's executor threads, hence the lock). Counted over the whole run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.scored = 0
        self.errors = 0

    def reset(self) -> None:
        with self._lock:
            self.scored = self.errors = 0

    def record(self, failed: bool) -> tuple[int, int]:
        with self._lock:
            self.scored += 1
            self.errors += int(failed)
            return self.errors, self.scored


COUNTER = GraderErrorCounter()


def record_scored() -> None:
    COUNTER.record(False)


def zero_on_grader_error(error: Exception, data_source, extra_info, grader: str, max_rate: float) -> None:
    """Count a sample whose grader raised (it scores 0), warn, and raise once errors exceed ``max_rate``."""
    errors, scored = COUNTER.record(True)
    label = row_label(data_source, extra_info)
    if errors >= GRADER_ERROR_MIN_COUNT and errors > max_rate * scored:
        raise GraderErrorRateExceeded(
            f"uec_recipe.reward: {errors} of the {scored} samples this reward worker scored raised in their grader "
            f"({errors / scored:.1%}), more than max_grader_error_rate={max_rate}; the latest: {label}, "
            f"{type(error).__name__}: {error}. Fix the grader (the warnings above hold the first tracebacks), or "
            "raise reward.custom_reward_function.reward_kwargs.max_grader_error_rate if these samples may score 0."
        ) from error
    if errors <= WARN_FIRST:
        logger.warning(
            "the %s raised on a sample (%s); scored 0 (on_grader_error=zero), %d of %d samples so far",
            grader,
            label,
            errors,
            scored,
            exc_info=error,
        )
    elif errors % WARN_EVERY == 0:
        logger.warning(
            "%d of %d samples scored so far raised in their grader and scored 0; the latest: %s, %s: %s",
            errors,
            scored,
            label,
            type(error).__name__,
            error,
        )


def grader_error_share(extra_fields) -> float | None:
    """The share of a step's samples scored 0 because their grader raised (``on_grader_error=zero``), from the
    ``extra_fields`` verl's reward loop stores per sample (``reward_extra_info`` holds what the reward returned);
    None when no sample carries the count (the policy is ``fail``, or the reward is not the recipe's)."""
    counts = []
    for extra in extra_fields:
        extra = getattr(extra, "data", extra)  # a NonTensorData wrapper when read from TransferQueue
        info = extra.get("reward_extra_info", {}) if isinstance(extra, dict) else {}
        if isinstance(info, dict) and info.get(GRADER_ERROR_KEY) is not None:
            counts.append(float(info[GRADER_ERROR_KEY]))
    return sum(counts) / len(counts) if counts else None
