"""Task v2: the carry-less chain task, its data, and the base policy shipped in assets/chain_sum/.

The shipped policy is checked where it is used: its files against the manifest's SHA-256, and its difficulty
ladder measured on the machine running the test against the contract (thresholds, not one machine's figures).
"""

from __future__ import annotations

import json
import random
import shutil
from itertools import permutations

import pandas as pd
import pytest

from uec_lab.demo import chain, chain_build
from uec_lab.demo.build import CHAT_TEMPLATE
from uec_lab.demo.ladder import BANDS, Ladder
from uec_lab.demo.reward import compute_score


def test_carryless_addition_adds_each_digit_modulo_ten():
    assert chain.carryless_add(347, 125) == 462
    assert chain.carryless_add(999, 111) == 0  # 9+1, 9+1, 9+1: every digit wraps, no carry
    assert chain.number_text(chain.carryless_add(555, 555)) == "000"
    assert chain.answer_of([347, 125, 906]) == 368


def test_every_order_of_the_operands_is_a_correct_chain_with_its_own_lines():
    operands = [347, 125, 906]
    chains = {chain.chain_text(list(order)) for order in permutations(operands)}
    assert len(chains) == 6  # the same answer through different intermediate results
    for text in chains:
        assert chain.final_answer(text) == 368
        for line in text.splitlines()[:-1]:
            left, result = line.split("=")
            a, b = map(int, left.split("+"))
            assert chain.carryless_add(a, b) == int(result)


def test_a_response_is_graded_by_the_number_after_its_last_marker():
    text = chain.chain_text([347, 125, 906])
    assert compute_score(chain.DATA_SOURCE, text, "368")["acc"] == 1.0
    assert compute_score(chain.DATA_SOURCE + "/hard", "#### 068", "068")["acc"] == 1.0  # leading zero kept
    assert compute_score(chain.DATA_SOURCE, "#### 368 #### 111", "368")["acc"] == 0.0
    assert chain.final_answer("no marker") is None


def test_the_guessing_baseline_is_the_chance_of_drawing_the_answer_k_times():
    # p(5) = 3/4, p(7) = 1/4; held-out answers 5 and 9 (never a training answer)
    value = chain.guessing_baseline([5, 5, 5, 7], [5, 9], k=2)
    assert value == pytest.approx((1 - (1 / 4) ** 2 + 0.0) / 2)
    with pytest.raises(ValueError, match="training answers"):
        chain.guessing_baseline([], [1], k=1)


def test_a_guesser_cannot_pass_at_16_on_three_or_more_operands():
    rng = random.Random(0)
    for operands in (3, 5, 7):
        train = [chain.answer_of(chain.problem(operands, rng)[1]) for _ in range(2048)]
        held_out = [chain.answer_of(chain.problem(operands, rng)[1]) for _ in range(256)]
        assert chain.guessing_baseline(train, held_out, k=16) <= 0.02


def test_the_prompt_text_is_what_the_chat_template_renders():
    from jinja2 import Template

    rendered = Template(CHAT_TEMPLATE).render(
        messages=[{"role": "user", "content": "What is 1 + 2?"}], add_generation_prompt=True
    )
    assert chain_build.prompt_text("What is 1 + 2?") == rendered


def test_rows_carry_level_band_and_a_three_digit_ground_truth():
    bands = {3: "easy", 4: "medium", 6: "hard"}
    rows = chain_build.rl_rows([3, 4, 6], 6, random.Random(1), "test", bands, by_band=True)
    assert [r["extra_info"]["level"] for r in rows] == [3, 4, 6, 3, 4, 6]
    for row in rows:
        band = bands[row["extra_info"]["level"]]
        assert row["extra_info"]["band"] == band and row["data_source"] == f"{chain.DATA_SOURCE}/{band}"
        operands = [int(x) for x in row["prompt"][0]["content"][len("What is ") : -1].split(" + ")]
        assert len(operands) == row["extra_info"]["level"]
        assert row["reward_model"]["ground_truth"] == chain.number_text(chain.answer_of(operands))
    train = chain_build.rl_rows([3], 2, random.Random(1), "train", bands, by_band=False)
    assert {r["data_source"] for r in train} == {chain.DATA_SOURCE} and train[0]["extra_info"]["band"] == "easy"


def test_a_warm_start_batch_has_one_level_and_loss_on_the_response_only():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chain_build.verify_shipped().model_dir)
    batch = chain_build.warm_start_batch(tokenizer, random.Random(3), chain_build.ChainSettings())
    ids, labels = batch["input_ids"], batch["labels"]
    assert ids.shape == labels.shape and ids.shape[0] >= 8
    first = tokenizer.decode(ids[0][batch["attention_mask"][0].bool()])
    answer = tokenizer.decode(labels[0][labels[0] != -100])
    assert first.startswith("<|im_start|>user\nWhat is ") and first.endswith(answer)
    assert answer.endswith("<|im_end|>") and "####" in answer and "What is" not in answer


# ---- the shipped artifact ----------------------------------------------------------------------------------------


def test_the_shipped_artifact_matches_its_manifest_and_is_small():
    artifacts = chain_build.verify_shipped()
    manifest = json.loads((chain_build.SHIPPED_DIR / chain_build.MANIFEST).read_text())
    assert manifest["total_bytes"] <= 10 * 1024 * 1024
    assert (artifacts.model_dir / "model.safetensors").is_file()
    for split in ("train", "test", "eval"):
        frame = pd.read_parquet(artifacts.root / "data" / f"{split}.parquet")
        assert set(frame["extra_info"].map(lambda e: e["band"])) <= set(BANDS) | {"between"}
    ladder = artifacts.ladder()
    assert not ladder.problems()  # the ladder recorded when it was built meets the contract


def test_a_changed_or_extra_file_in_the_shipped_artifact_is_refused_by_name(tmp_path):
    copy = tmp_path / "chain_sum"
    shutil.copytree(chain_build.SHIPPED_DIR, copy)
    chain_build.verify_shipped(copy)
    with open(copy / "data" / "train.parquet", "ab") as handle:
        handle.write(b"\0")
    (copy / "stray.txt").write_text("x")
    with pytest.raises(chain_build.ShippedArtifactError, match=r"data/train.parquet differs.*stray.txt is not in"):
        chain_build.verify_shipped(copy)
    (copy / chain_build.MANIFEST).unlink()
    with pytest.raises(chain_build.ShippedArtifactError, match="MANIFEST.json is missing"):
        chain_build.verify_shipped(copy)


def test_the_shipped_policy_meets_the_ladder_contract_on_this_machine():
    # check_ladder_here raises LadderError, naming the measured figures, when a band is missing on this machine
    ladder = chain_build.check_ladder_here(chain_build.verify_shipped(), log=lambda _: None)
    assert isinstance(ladder, Ladder) and not ladder.problems()


def test_a_warm_start_stopped_at_a_step_saves_the_policy_and_reports_its_ladder(tmp_path):
    # the pilots' variant of the build: a fixed step instead of the contract, the ladder reported, nothing shipped
    from dataclasses import replace

    small = replace(chain_build.ChainSettings(), ladder_prompts_per_level=1, ladder_samples=2)
    report, ladder = chain_build.warm_start_to_step(3, tmp_path / "early", small, log=lambda message: None)
    assert report["steps"] == 3 and sorted(ladder.sampled) == list(range(2, 10))
    saved = json.loads((tmp_path / "early" / "ladder.json").read_text())
    assert saved["steps"] == 3 and saved["ladder"]["samples_per_level"] == 2
    assert (tmp_path / "early" / "model" / "model.safetensors").is_file()
    with pytest.raises(SystemExit, match="--stop-at-step 0: give a step in 1..4000"):
        chain_build.warm_start_to_step(0, tmp_path / "none", small)
    with pytest.raises(SystemExit):
        chain_build.main(["--stop-at-step", "3"])  # needs --root
