"""examples/own_dataset without the trainer: its data conversion and schema check, and its grader scoring through
compute_score exactly as verl's reward loop calls it, with the reward file loaded by path the way verl loads it."""

import asyncio
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(REPO_ROOT, "examples", "own_dataset")
REWARD_FILE = os.path.join(EXAMPLE, "arithmetic_reward.py")
DATA_SOURCE = "my_lab/worksheet_sums"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The example's README step 1, run as the README runs it (from the repository root, as a script)."""
    out = tmp_path_factory.mktemp("worksheets")
    result = subprocess.run(
        [sys.executable, os.path.join(EXAMPLE, "prepare.py"), "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "train: 24 rows" in result.stdout and "test: 8 rows" in result.stdout
    return out


@pytest.fixture
def example_prepare(monkeypatch):
    """examples/own_dataset/prepare.py as a module (it imports its sibling arithmetic_reward, as a script does)."""
    import importlib

    monkeypatch.syspath_prepend(EXAMPLE)
    for name in ("prepare", "arithmetic_reward"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module("prepare")


def test_conversion_writes_valid_rl_parquet_from_the_users_own_fields(prepared):
    from uec_recipe.data_schema import validate_rl_parquet

    raw = [json.loads(line) for line in (prepared / "worksheets.jsonl").read_text().splitlines()]
    assert len(raw) == 32 and set(raw[0]) == {"sheet", "task", "result", "split"}  # not the project's field names
    for split, count in (("train", 24), ("test", 8)):
        path = prepared / f"{split}.parquet"
        assert validate_rl_parquet(path, require_images=False) == count
        rows = pd.read_parquet(path).to_dict(orient="records")
        source = [record for record in raw if record["split"] == split]
        assert [row["prompt"][0]["content"] for row in rows] == [record["task"] for record in source]
        assert [row["reward_model"]["ground_truth"] for row in rows] == [str(record["result"]) for record in source]
        assert {row["data_source"] for row in rows} == {DATA_SOURCE}
        assert [row["extra_info"]["index"] for row in rows] == list(range(count))
    assert not [name for name in os.listdir(prepared) if name.endswith(".tmp")]


def test_bad_records_fail_clearly_and_leave_no_file(example_prepare, tmp_path):
    from uec_recipe.data_schema import SchemaError

    jsonl = tmp_path / "worksheets.jsonl"
    jsonl.write_text(json.dumps({"task": "What is 1 + 2?", "split": "train"}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: field 'result' is missing or empty"):
        example_prepare.convert(str(jsonl), str(tmp_path))
    # A row the schema rejects (here an empty question) is never renamed into place.
    row = example_prepare.rl_row({"task": " ", "result": 3, "split": "train"}, 0)
    with pytest.raises(SchemaError, match="a message with empty content at row"):
        example_prepare.write_rows([row], str(tmp_path / "train.parquet"), has_images=False)
    assert sorted(os.listdir(tmp_path)) == ["worksheets.jsonl"]


def test_data_source_is_the_one_the_grader_registers(example_prepare):
    assert example_prepare.DATA_SOURCE == DATA_SOURCE


# --- the grader, loaded and called the way verl does ----------------------------------------------------------------


def reward_config(grader=None):
    from omegaconf import OmegaConf

    custom = {"path": REWARD_FILE, "name": "compute_score"}
    if grader is not None:
        custom["reward_kwargs"] = {"grader": grader}  # +reward.custom_reward_function.reward_kwargs.grader=...
    return OmegaConf.create(
        {"reward": {"custom_reward_function": custom, "reward_manager": {"source": "register", "name": "naive"}}}
    )


@pytest.fixture(scope="module")
def tokenizer():
    from uec_lab.demo.build import build_tokenizer

    return build_tokenizer(None)


def score_like_verls_reward_loop(manager, tokenizer, row, response):
    """One sample through verl's NaiveRewardManager.run_single: response token ids decoded by the reward manager,
    data_source / reward_model / extra_info from the parquet row, compute_score run in an executor thread."""
    import torch
    from verl import DataProto

    prompt_ids = tokenizer(row["prompt"][0]["content"], add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    data = DataProto.from_dict(
        tensors={
            "prompts": torch.tensor([prompt_ids]),
            "responses": torch.tensor([response_ids]),
            "attention_mask": torch.ones(1, len(prompt_ids) + len(response_ids), dtype=torch.long),
        },
        non_tensors={
            key: np.array([dict(row[key]) if isinstance(row[key], dict) else row[key]], dtype=object)
            for key in ("data_source", "reward_model", "extra_info")
        },
    )
    return manager.loop.run_until_complete(manager.run_single(data))


@pytest.fixture(scope="module")
def event_loop_for_verl():
    # verl's managers take the current event loop; give this module its own and close it afterwards.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


@pytest.mark.parametrize("grader", [None, "paper", "robust"])
def test_registered_grader_scores_through_verls_reward_loop(prepared, tokenizer, event_loop_for_verl, grader):
    from verl.trainer.ppo.reward import load_reward_manager

    manager = load_reward_manager(reward_config(grader), tokenizer)
    row = pd.read_parquet(prepared / "test.parquet").to_dict(orient="records")[0]
    gold = int(row["reward_model"]["ground_truth"])
    cases = {
        f"#### {gold}": 1.0,
        f"#### {gold + 1}": 0.0,
        f"so \\boxed{{{gold}}}": 1.0,
        f"#### {gold + 1} no: \\boxed{{{gold}}}": 1.0,
        f"\\boxed{{{gold}}} no: #### {gold + 1}": 0.0,
        "I do not know": 0.0,
    }
    for response, expected in cases.items():
        result = score_like_verls_reward_loop(manager, tokenizer, row, response)
        assert result["reward_score"] == expected, response
        assert result["reward_extra_info"]["acc"] == expected and set(result["reward_extra_info"]) == {
            "score",
            "acc",
            "pred",
        }
    assert score_like_verls_reward_loop(manager, tokenizer, row, f"#### {gold}")["reward_extra_info"]["pred"] == str(
        gold
    )


def test_the_grader_keyword_reaches_the_registered_grader(prepared):
    from verl.trainer.ppo.reward import get_custom_reward_fn

    row = pd.read_parquet(prepared / "test.parquet").to_dict(orient="records")[0]
    gold = row["reward_model"]["ground_truth"]
    call = dict(data_source=DATA_SOURCE, solution_str=f"\\boxed{{{gold}.0}}", ground_truth=gold, extra_info={})
    # "12.0" for 12: mathruler (paper) and the robust comparison agree here, both accept it...
    assert get_custom_reward_fn(reward_config("paper"))(**call)["acc"] == 1.0
    assert get_custom_reward_fn(reward_config("robust"))(**call)["acc"] == 1.0
    # ...a brace-less box only the robust grader reads.
    call["solution_str"] = f"so $\\boxed {gold}$"
    assert get_custom_reward_fn(reward_config("paper"))(**call)["acc"] == 0.0
    assert get_custom_reward_fn(reward_config("robust"))(**call)["acc"] == 1.0


def test_the_projects_own_data_sources_still_score_through_the_example_file():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    compute_score = get_custom_reward_fn(reward_config())
    assert compute_score(data_source="hiyouga/geometry3k", solution_str="\\boxed{34}", ground_truth="34")["acc"] == 1.0
    with pytest.raises(ValueError, match="unknown data_source 'my_lab/other'.*registered: .*my_lab/worksheet_sums"):
        compute_score(data_source="my_lab/other", solution_str="#### 1", ground_truth="1")


def test_evaluation_scores_with_the_same_file(prepared, tmp_path):
    # uec_recipe.eval.sample --reward-path: the same grader scores evaluation; a stand-in generator answers.
    from uec_recipe.eval import sample

    def generate(chats, n):
        totals = [sum(int(t) for t in chat[-1]["content"][len("What is ") : -1].split(" + ")) for chat in chats]
        return [[f"#### {total}"] * (n - 1) + ["#### -1"] for total in totals]

    argv = ["--model", "Qwen/Qwen2.5-Math-7B", "--data", str(prepared / "test.parquet"), "--out", str(tmp_path)]
    argv += ["--n", "4", "--reward-path", REWARD_FILE, "--grader", "robust"]
    (summary,) = sample.main(argv, generate=generate)
    assert summary["avg@n"] == 0.75 and summary["grader"] == "robust"
    assert summary["reward_function"] == f"{REWARD_FILE}:compute_score"
    assert summary["grader_by_data_source"][DATA_SOURCE] == f"registered grader grade_worksheet from {REWARD_FILE}"
