"""HF math-verify equivalence, safe outside the main thread.

math-verify bounds parse/verify with ``signal.alarm``, which only works in the main thread, and verl's reward loop
runs ``compute_score`` in executor threads. Off the main thread we therefore run math-verify's own public
parse/verify in a small spawned process pool, where each call runs in that process's main thread with its
alarm-based timeouts (the approach of ``verl/utils/reward_score/math_verify.py``). The pool is submitted
math-verify's functions, not ours, so it works even when verl loaded the reward file by path under a module name a
child process could not import.
"""

from __future__ import annotations

import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeoutError
from concurrent.futures.process import BrokenProcessPool

# math-verify budgets: per parse / per comparison inside math-verify, and a wall-clock bound on a worker call.
MATH_VERIFY_TIMEOUT_S = 5
MATH_VERIFY_WALL_TIMEOUT_S = 30.0
MATH_VERIFY_WORKERS = 2

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


class MathVerifyPoolError(RuntimeError):
    """The worker pool is broken (a worker was killed or could not start): the environment, not one sample, is at
    fault, so the reward's grader-error policy never turns this into a zero score."""


def _math_verify_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            import multiprocessing

            _pool = ProcessPoolExecutor(MATH_VERIFY_WORKERS, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def _reset_math_verify_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def math_verify_equal(gold: str, pred: str) -> bool:
    """math-verify equivalence of boxed answer strings, gold parsed first; False on timeout or parse failure."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    # The same extraction targets as verl's math_verify scorer: gold is LaTeX; a prediction may also be plain text.
    gold_args = ("\\boxed{" + gold + "}", (LatexExtractionConfig(),))
    pred_args = ("\\boxed{" + pred + "}", (ExprExtractionConfig(), LatexExtractionConfig()))
    if threading.current_thread() is threading.main_thread():
        gold_parsed = parse(*gold_args, parsing_timeout=MATH_VERIFY_TIMEOUT_S)
        pred_parsed = parse(*pred_args, parsing_timeout=MATH_VERIFY_TIMEOUT_S)
        return bool(gold_parsed and pred_parsed) and verify(
            gold_parsed, pred_parsed, timeout_seconds=MATH_VERIFY_TIMEOUT_S
        )
    for attempt in range(2):
        try:
            pool = _math_verify_pool()
            gold_future = pool.submit(parse, *gold_args, parsing_timeout=MATH_VERIFY_TIMEOUT_S)
            pred_future = pool.submit(parse, *pred_args, parsing_timeout=MATH_VERIFY_TIMEOUT_S)
            gold_parsed = gold_future.result(timeout=MATH_VERIFY_WALL_TIMEOUT_S)
            pred_parsed = pred_future.result(timeout=MATH_VERIFY_WALL_TIMEOUT_S)
            if not (gold_parsed and pred_parsed):
                return False
            same = pool.submit(verify, gold_parsed, pred_parsed, timeout_seconds=MATH_VERIFY_TIMEOUT_S)
            return bool(same.result(timeout=MATH_VERIFY_WALL_TIMEOUT_S))
        except FuturesTimeoutError:
            # A worker stuck past math-verify's own alarm: score 0, as verl's scorer does, and keep training.
            return False
        except BrokenProcessPool as error:
            # A worker died (killed for memory, or could not start). Retry once on a fresh pool; a second failure is
            # a broken environment, and scoring every sample 0 would silently poison training, so raise.
            _reset_math_verify_pool()
            if attempt == 1:
                raise MathVerifyPoolError(
                    "uec_recipe.reward: the math-verify worker pool broke twice; a spawned worker could not start "
                    "or was killed. Is the main module import-safe (`if __name__ == '__main__':`)?"
                ) from error
    raise AssertionError("unreachable")
