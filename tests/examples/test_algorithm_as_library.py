"""examples/algorithm_as_library: the walkthrough runs as its README runs it, and every decision it prints matches
what the rules of docs/algorithm.md give for its hand-made rollouts, worked out by hand below."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WALKTHROUGH = REPO / "examples" / "algorithm_as_library" / "walkthrough.py"

# GRPO advantage of a group of 4 binary rewards with k correct, Â = (r - k/4) / (unbiased std + 1e-6):
# k = 1: std 0.5, so +1.5 / -0.5; k = 2: std 0.5774, so +-0.866; k = 3: std 0.5, so +0.5 / -1.5; k = 0: all 0.
HAND_ADVANTAGE = {0: (None, 0.0), 1: (1.5, -0.5), 2: (0.866, -0.866), 3: (0.5, -1.5)}

# The walkthrough's groups as it defines them: which samples are correct, per step (regular, then exploration).
GROUPS = {
    1: {"A": "1010", "B": "0000", "B'": "1100"},
    2: {"C": "0110", "D": "0000", "D'": "0010"},
    3: {"E": "1110", "F": "0000", "F'": "1010"},
}

# What each stage decides, worked out by hand (N0 = 8, buffers of 16 rows, A0 = 0.5, a replay every 3 steps):
EXPECTED = {
    1: {
        "2 difficult": "B",
        # B': Â = +-0.866, only Â > 0 kept; A (k = 2) all kept; B (all wrong, Â = 0) dropped
        "5 retain": "exploration Â > 0: B'1 B'2 | regular |Â| > 0.05: A1 A2 A3 A4",
        "5 overlong": "length 8 and Â > 0, dropped: -",  # B'4 hit the limit but has Â < 0 and was not kept anyway
        "6 buffer": "+ B'1 B'2 A1 A2 A3 A4 -> 6 rows, evicted: -",
        "6 update": ["none: 6 < N0 = 8 rows"],
        "7 replay": ["buffer 0 rows: -", "not due (every 3 steps)"],
    },
    2: {
        "2 difficult": "D",
        "5 retain": "exploration Â > 0: D'3 | regular |Â| > 0.05: C1 C2 C3 C4",
        "5 overlong": "length 8 and Â > 0, dropped: -",
        "6 buffer": "+ D'3 C1 C2 C3 C4 -> 11 rows, evicted: -",
        # 11 rows: one whole block of 8, oldest first; 3 wait for the next step
        "6 update": [
            "pops 8 = 1 x N0 rows, oldest first: B'1 B'2 A1 A2 A3 A4 D'3 C1",
            "left in the buffer: C2 C3 C4",
        ],
        # Â > 0.5 among the popped rows: B'1 B'2 A1 A3 (+0.866), D'3 (+1.5); C1 is -0.866
        "7 admit": "Â > 0.5: B'1 B'2 A1 A3 D'3, evicted: -",
        "7 replay": ["buffer 5 rows: B'1 B'2 A1 A3 D'3", "not due (every 3 steps)"],
    },
    3: {
        "2 difficult": "F",
        "5 retain": "exploration Â > 0: F'1 F'3 | regular |Â| > 0.05: E1 E2 E3 E4",
        # E2 (+0.5) and E4 (-1.5) both hit the limit; only the positive one is dropped
        "5 overlong": "length 8 and Â > 0, dropped: E2",
        "6 buffer": "+ F'1 F'3 E1 E3 E4 -> 8 rows, evicted: -",
        "6 update": [
            "pops 8 = 1 x N0 rows, oldest first: C2 C3 C4 F'1 F'3 E1 E3 E4",
            "left in the buffer: -",
        ],
        # E's +0.5 is not > 0.5 (strict); C2 C3 F'1 F'3 are +0.866
        "7 admit": "Â > 0.5: C2 C3 F'1 F'3, evicted: -",
    },
}
REPLAY_BUFFER_AT_STEP_3 = "B'1 B'2 A1 A3 D'3 C2 C3 F'1 F'3".split()

GROUP_LINE = re.compile(r"^  (1 rollout|3 explore)\s+(\S+)\s+correct ([01 ]+?)\s+length ([\d ]+?)\s+Â (.+)$")
STAGE_LINE = re.compile(r"^  (\d [a-z]+)\s+(.*)$")


@pytest.fixture(scope="module")
def steps() -> dict[int, list[str]]:
    """The walkthrough's output, run as its README says (from the repository root), split by step."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(WALKTHROUGH)], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    by_step: dict[int, list[str]] = {}
    current = None
    for line in result.stdout.splitlines():
        if re.fullmatch(r"step \d+", line):
            current = int(line.split()[1])
            by_step[current] = []
        elif current is not None and line.strip():
            by_step[current].append(line)
    assert sorted(by_step) == [1, 2, 3]
    return by_step


def decisions(lines: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in lines:
        match = STAGE_LINE.match(line)
        assert match, line
        found.setdefault(match.group(1), []).append(match.group(2))
    return found


@pytest.mark.parametrize("step", [1, 2, 3])
def test_group_advantages_are_grpos_worked_out_by_hand(steps, step):
    groups = {}
    for line in steps[step]:
        match = GROUP_LINE.match(line)
        if match:
            groups[match.group(2)] = (match.group(3).replace(" ", ""), [float(v) for v in match.group(5).split()])
    assert {uid: correct for uid, (correct, _) in groups.items()} == GROUPS[step]
    for uid, (correct, advantages) in groups.items():
        right, wrong = HAND_ADVANTAGE[correct.count("1")]
        expected = [right if bit == "1" else wrong for bit in correct]
        assert advantages == pytest.approx(expected, abs=1e-3), uid


@pytest.mark.parametrize("step", [1, 2, 3])
def test_every_stage_decides_as_worked_out_by_hand(steps, step):
    found = decisions(steps[step])
    for stage, expected in EXPECTED[step].items():
        assert found[stage] == (expected if isinstance(expected, list) else [expected]), (step, stage)


def test_the_third_step_replays_whole_n0_blocks_sampled_from_the_replay_buffer(steps):
    replay = decisions(steps[3])["7 replay"]
    assert replay[0] == "buffer 9 rows: " + " ".join(REPLAY_BUFFER_AT_STEP_3)
    match = re.fullmatch(r"due, not full \(9 of 16 rows\): one extra update on (\d+) rows: (.+)", replay[1])
    assert match, replay[1]
    replayed = match.group(2).split()
    # not full: a uniform sample of floor(9 / 8) * 8 = 8 distinct rows of the 9
    assert int(match.group(1)) == len(replayed) == math.floor(9 / 8) * 8
    assert len(set(replayed)) == 8 and set(replayed) < set(REPLAY_BUFFER_AT_STEP_3)
