"""The difficulty ladder: bands from measured accuracies, the build contract, and the built demos keeping it.

The thresholds come from the contract (uec_lab/demo/ladder.py), never from one machine's accuracies: the
warm start lands elsewhere on another CPU, and the build picks its task's levels from what it measured.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from uec_lab.demo.build import DATA_SOURCE, DemoArtifacts, band_data_source, build_cached
from uec_lab.demo.ladder import EASY, HARD, MEDIUM, UNSOLVED, Ladder, LadderContract, LadderError


def ladder_of(sampled: dict, greedy: dict | None = None, contract=LadderContract(), samples=100) -> Ladder:
    greedy = greedy or {level: min(1.0, value + 0.1) for level, value in sampled.items()}
    successes = {level: round(value * samples) for level, value in sampled.items()}
    return Ladder(contract, greedy, sampled, successes, samples)


def test_bands_follow_the_contract_thresholds():
    ladder = ladder_of({1: 0.98, 2: 0.87, 3: 0.6, 4: 0.2, 5: 0.08, 6: 0.0})
    assert ladder.bands == {1: EASY, 2: "between", 3: MEDIUM, 4: MEDIUM, 5: HARD, 6: UNSOLVED}
    assert ladder.problems() == []
    # the task: the hardest easy level, the medium and hard ones, and what lies between them; never the unsolved
    assert ladder.task_levels() == [1, 2, 3, 4, 5]


def test_a_hard_level_needs_the_contracts_minimum_of_successes():
    # 384 samples a level: 1 success is luck (unsolved at a minimum of 4), 8 successes a rung to learn from
    contract = LadderContract(hard_min_successes=4)
    ladder = ladder_of({2: 0.98, 3: 0.6, 4: 0.22, 5: 8 / 384, 6: 1 / 384}, contract=contract, samples=384)
    assert ladder.bands == {2: EASY, 3: MEDIUM, 4: MEDIUM, 5: HARD, 6: UNSOLVED}
    assert ladder.task_levels() == [2, 3, 4, 5]
    default = ladder_of({2: 0.98, 3: 0.6, 4: 0.22, 5: 8 / 384, 6: 1 / 384}, samples=384)
    assert default.band_of(6) == HARD  # the first task's contract: one success makes a hard level
    too_rare = ladder_of({2: 0.98, 3: 0.6, 4: 0.22, 5: 3 / 384}, contract=contract, samples=384)
    assert "at least 4 success(es)" in too_rare.problems()[0]


def test_greedy_decides_easy_and_hard_too():
    # sampled 0.95 but greedy 0.5 is not "solved"; sampled 0.05 but greedy 0.9 is not "rarely solved"
    ladder = ladder_of({1: 0.95, 2: 0.05}, greedy={1: 0.5, 2: 0.9})
    assert ladder.bands == {1: "between", 2: "between"}


def test_a_ladder_without_a_band_fails_naming_the_figures():
    too_easy = ladder_of({1: 1.0, 2: 0.97, 3: 0.7, 4: 0.5})  # nothing rarely solved
    assert len(too_easy.problems()) == 1 and "hard" in too_easy.problems()[0]
    with pytest.raises(LadderError, match=r"0 hard level\(s\), need 1.*L4 medium \(greedy 0.60, T=1 0.50\)"):
        too_easy.check()
    too_steep = ladder_of({1: 0.99, 2: 0.5, 3: 0.05})
    with pytest.raises(LadderError, match=r"1 medium level\(s\), need 2"):
        too_steep.check()
    assert ladder_of({1: 0.99, 2: 0.5, 3: 0.05}, contract=LadderContract(min_medium=1)).check()


def test_ladder_round_trips_through_its_report():
    ladder = ladder_of({1: 0.98, 2: 0.6, 3: 0.3, 4: 0.05})
    again = Ladder.from_json(json.loads(json.dumps(ladder.to_json())))
    assert again.bands == ladder.bands and again.task_levels() == ladder.task_levels() == [1, 2, 3, 4]


def test_a_failed_build_leaves_nothing_in_the_cache(tmp_path):
    artifacts = DemoArtifacts(tmp_path / "demo-x")

    def build_into(staging):
        (staging / "model").mkdir()
        ladder_of({1: 1.0, 2: 1.0}).check()

    with pytest.raises(LadderError):
        build_cached(artifacts, "demo", build_into, log=lambda _: None)
    assert not artifacts.root.exists() and list(tmp_path.iterdir()) == []


def check_built(artifacts, data_source_of_band=None):
    """The build's report holds a ladder that keeps its own contract, and its data covers exactly the task."""
    ladder = artifacts.ladder()
    assert ladder.problems() == []
    task = ladder.task_levels()
    contract = ladder.contract
    for level in task:
        band = ladder.band_of(level)
        if band == EASY:
            assert ladder.sampled[level] >= contract.easy_min and ladder.greedy[level] >= contract.easy_min
        elif band == MEDIUM:
            assert contract.medium_low <= ladder.sampled[level] <= contract.medium_high
        elif band == HARD:
            assert ladder.sampled[level] <= contract.hard_max and ladder.successes[level] > 0
    assert {ladder.band_of(level) for level in task} >= {EASY, MEDIUM, HARD}
    return ladder, task


def test_text_demo_keeps_its_ladder_and_trains_on_its_task(demo):
    ladder, task = check_built(demo)
    train = pq.read_table(demo.train_file).to_pylist()
    assert {row["extra_info"]["level"] for row in train} == set(task)
    assert {row["data_source"] for row in train} == {DATA_SOURCE}
    for path in (demo.test_file, demo.eval_file):
        rows = pq.read_table(path).to_pylist()
        assert {row["extra_info"]["level"] for row in rows} == set(task)
        for row in rows:  # validation rows are reported per band
            assert row["data_source"] == band_data_source(ladder.band_of(row["extra_info"]["level"]))


def test_vlm_demo_keeps_its_ladder_and_trains_on_its_task(vlm_demo):
    ladder, task = check_built(vlm_demo)
    assert ladder.contract.min_medium == 1
    for path in (vlm_demo.train_file, vlm_demo.test_file):
        counts = {int(row["reward_model"]["ground_truth"]) for row in pq.read_table(path).to_pylist()}
        assert counts == set(task)
