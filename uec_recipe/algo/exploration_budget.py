"""An adaptive exploration budget (``uec.exploration.budget=adaptive``), an option beyond the paper.

The paper spends G' samples on every difficult prompt and names adaptive exploration budgets as future work
(arXiv 2604.14646, Limitations). This rule spends the same total, G' times the number of difficult prompts, where
it is most likely to turn a difficult prompt into a solved one:

* every prompt keeps a history: times explored, exploration samples drawn, correct ones found, last step seen;
* its chance that one exploration sample is correct is estimated as (successes + m·μ) / (samples + m): its own
  record shrunk towards μ, the success rate of all exploration samples so far, with the weight of one
  exploration's samples (m = G'); a prompt never explored gets μ;
* the samples go one at a time to the prompt whose chance of at least one success, 1 − (1 − p)^n, rises most
  with one more sample; that gain, p·(1 − p)^n, shrinks as a prompt receives more, so the greedy allocation
  maximises the expected number of difficult prompts exploration solves (a sum of concave terms);
* every prompt gets at least ``floor`` samples (two make a group with an advantage), so a prompt that failed every
  exploration so far is never abandoned, and at most ``cap``.

Prompts with equal estimates get equal shares (G' each when the cap allows): the reference allocation. Nothing
here knows about Ray or the trainer; the state is plain numbers, checkpointed with the buffers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class PromptHistory:
    explored: int = 0  # times the prompt was explored
    samples: int = 0  # exploration samples drawn for it
    successes: int = 0  # correct ones among them
    last_step: int = 0  # the step it was last explored


@dataclass
class Allocation:
    samples: list[int]  # per prompt, in the order asked
    chances: list[float]  # per prompt, the estimated chance that one sample is correct

    @property
    def expected_successes(self) -> float:
        return sum(n * p for n, p in zip(self.samples, self.chances))

    @property
    def expected_solved(self) -> float:
        return sum(1 - (1 - p) ** n for n, p in zip(self.samples, self.chances))


@dataclass
class ExplorationBudget:
    per_prompt: int  # G': the reference spends this on every difficult prompt
    floor: int = 2
    cap: int | None = None  # default 2·G'
    history: dict[str, PromptHistory] = field(default_factory=dict)
    total_samples: int = 0
    total_successes: int = 0

    def __post_init__(self):
        if self.cap is None:
            self.cap = 2 * self.per_prompt
        if not 1 <= self.floor <= self.per_prompt <= self.cap:
            raise ValueError(
                f"exploration budget: need 1 <= floor ({self.floor}) <= G' ({self.per_prompt}) <= cap ({self.cap})"
            )

    def base_rate(self) -> float:
        """μ: the success rate of all exploration samples so far, with one pseudo-success in G' before any."""
        return (self.total_successes + 1) / (self.total_samples + self.per_prompt)

    def chance(self, key: str) -> float:
        record = self.history.get(key, PromptHistory())
        m = self.per_prompt
        return (record.successes + m * self.base_rate()) / (record.samples + m)

    def allocate(self, keys: list[str]) -> Allocation:
        """Split G'·len(keys) samples among the prompts (same order as ``keys``)."""
        chances = [self.chance(key) for key in keys]
        budget = self.per_prompt * len(keys)
        samples = [self.floor] * len(keys)
        for _ in range(budget - self.floor * len(keys)):
            gains = [p * (1 - p) ** n if n < self.cap else -1.0 for n, p in zip(samples, chances)]
            best = max(range(len(keys)), key=lambda i: (gains[i], -samples[i], -i))
            if gains[best] < 0:
                break  # every prompt is at its cap: the rest of the budget is not spent
            samples[best] += 1
        return Allocation(samples, chances)

    def record(self, key: str, samples: int, successes: int, step: int) -> None:
        entry = self.history.setdefault(key, PromptHistory())
        entry.explored += 1
        entry.samples += samples
        entry.successes += successes
        entry.last_step = step
        self.total_samples += samples
        self.total_successes += successes

    def state(self) -> dict:
        return {
            "history": {key: asdict(entry) for key, entry in self.history.items()},
            "total_samples": self.total_samples,
            "total_successes": self.total_successes,
        }

    def restore(self, state: dict) -> None:
        self.history = {key: PromptHistory(**entry) for key, entry in state["history"].items()}
        self.total_samples = int(state["total_samples"])
        self.total_successes = int(state["total_successes"])
