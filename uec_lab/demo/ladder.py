"""The difficulty ladder a demo build promises, measured on the model it built and checked before it is used.

UEC-RL acts on prompts that a policy never solves at the base temperature, so a CPU demo needs three kinds of
level: *easy* ones the policy solves (their groups are all correct and filtered out), *medium* ones it solves
unreliably (mixed groups: GRPO's signal) and *hard* ones it rarely solves (all-wrong groups: what exploration at
T' is for). Floating point differs between CPU families, so the same warm start lands on different accuracies
on different machines. A build therefore measures every level's greedy and sampled (T = 1) accuracy, sorts the
levels into bands by the thresholds below, and forms its task from the levels that landed in each band; a build
whose ladder lacks a band fails, naming the figures. Tests check these thresholds, not one machine's numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

EASY, MEDIUM, HARD = "easy", "medium", "hard"
BETWEEN = "between"  # between two bands: measured and reported under its own name
UNSOLVED = "unsolved"  # not one success in the measurement: no method can learn it from rewards
BANDS = (EASY, MEDIUM, HARD)


class LadderError(RuntimeError):
    """The built model does not have the ladder its task needs; the message holds the measured figures."""


@dataclass(frozen=True)
class LadderContract:
    """What a demo build guarantees about its task's levels (accuracies in [0, 1])."""

    easy_min: float = 0.9  # easy: sampled and greedy accuracy at least this (solved)
    medium_low: float = 0.15  # medium: sampled accuracy in [medium_low, medium_high] (unreliable)
    medium_high: float = 0.85
    hard_max: float = 0.1  # hard: sampled accuracy at most this, and at least one success (rarely solved)
    hard_greedy_max: float = 0.3  # ... with greedy decoding no better than this
    hard_min_successes: int = 1  # ... and at least this many successes: fewer is luck, not a rung to learn from
    min_easy: int = 1  # levels each band must have
    min_medium: int = 2
    min_hard: int = 1

    def band(self, greedy: float, sampled: float, successes: int) -> str:
        if sampled >= self.easy_min and greedy >= self.easy_min:
            return EASY
        if self.medium_low <= sampled <= self.medium_high:
            return MEDIUM
        if successes < max(1, self.hard_min_successes):
            return UNSOLVED
        if sampled <= self.hard_max and greedy <= self.hard_greedy_max:
            return HARD
        return BETWEEN


@dataclass
class Ladder:
    """Measured accuracy of every level and the band it falls in."""

    contract: LadderContract
    greedy: dict[int, float]
    sampled: dict[int, float]
    successes: dict[int, int]  # correct samples at T = 1 (of ``samples_per_level``)
    samples_per_level: int
    bands: dict[int, str] = field(init=False)

    def __post_init__(self):
        self.bands = {
            level: self.contract.band(self.greedy[level], self.sampled[level], self.successes[level])
            for level in sorted(self.sampled)
        }

    def levels_in(self, band: str) -> list[int]:
        return [level for level, b in self.bands.items() if b == band]

    def problems(self) -> list[str]:
        """What the ladder lacks, one message per band (empty when the contract holds)."""
        c = self.contract
        wanted = {EASY: c.min_easy, MEDIUM: c.min_medium, HARD: c.min_hard}
        rules = {
            EASY: f"sampled and greedy accuracy >= {c.easy_min}",
            MEDIUM: f"sampled accuracy in [{c.medium_low}, {c.medium_high}]",
            HARD: f"sampled accuracy <= {c.hard_max} with at least {max(1, c.hard_min_successes)} success(es), "
            f"greedy <= {c.hard_greedy_max}",
        }
        return [
            f"{len(self.levels_in(band))} {band} level(s), need {wanted[band]} ({rules[band]})"
            for band in BANDS
            if len(self.levels_in(band)) < wanted[band]
        ]

    def check(self) -> "Ladder":
        problems = self.problems()
        if problems:
            raise LadderError(
                "the built demo model does not have the difficulty ladder its task needs: "
                + "; ".join(problems)
                + f". Measured: {self.describe()}. The warm start landed elsewhere on this machine; report it "
                "with these figures"
            )
        return self

    def task_levels(self) -> list[int]:
        """The levels the task trains and validates on: the hardest easy level(s), every medium and hard level."""
        easy = self.levels_in(EASY)[-self.contract.min_easy :]
        chosen = set(easy) | set(self.levels_in(MEDIUM)) | set(self.levels_in(HARD))
        # levels between two chosen ones keep the ladder contiguous (a level just outside a band is still a rung)
        low, high = min(chosen), max(chosen)
        return [level for level in sorted(self.bands) if low <= level <= high and self.bands[level] != UNSOLVED]

    def band_of(self, level: int) -> str:
        return self.bands[level]

    def describe_task(self, prefix: str = "L") -> str:
        """The task's levels with their bands, e.g. ``L5 easy, L8 medium, L13 hard``."""
        return ", ".join(f"{prefix}{level} {self.bands[level]}" for level in self.task_levels())

    def describe(self) -> str:
        return ", ".join(
            f"L{level} {self.bands[level]} (greedy {self.greedy[level]:.2f}, T=1 {self.sampled[level]:.2f})"
            for level in sorted(self.bands)
        )

    def to_json(self) -> dict:
        return {
            "contract": asdict(self.contract),
            "samples_per_level": self.samples_per_level,
            "levels": {
                str(level): {
                    "greedy": self.greedy[level],
                    "sampled": self.sampled[level],
                    "successes": self.successes[level],
                    "band": self.bands[level],
                }
                for level in sorted(self.bands)
            },
            "task_levels": self.task_levels() if not self.problems() else [],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Ladder":
        levels = {int(k): v for k, v in data["levels"].items()}
        return cls(
            contract=LadderContract(**data["contract"]),
            greedy={k: v["greedy"] for k, v in levels.items()},
            sampled={k: v["sampled"] for k, v in levels.items()},
            successes={k: v["successes"] for k, v in levels.items()},
            samples_per_level=int(data["samples_per_level"]),
        )


def band_table(ladder: Ladder, unit: str = "level") -> list[str]:
    """A markdown table of the measured ladder (for build reports, summaries and the study report)."""
    lines = [f"| {unit} | band | greedy accuracy | sampled accuracy (T = 1) |", "|---|---|---|---|"]
    task = set(ladder.task_levels()) if not ladder.problems() else set()
    for level in sorted(ladder.bands):
        mark = "" if level in task else " (not in the task)"
        lines.append(
            f"| {level} | {ladder.bands[level]}{mark} | {ladder.greedy[level]:.2f} | {ladder.sampled[level]:.2f} |"
        )
    return lines
