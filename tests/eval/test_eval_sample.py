"""Sampling evaluation on CPU: a tiny random Qwen2 end to end, the scoring path with known answers, resume."""

import json
import re

import pandas as pd
import pytest

from uec_recipe.eval import sample
from uec_recipe.eval.backends import HFSampler, multimodal_chat, resolve_model_path
from uec_recipe.eval.passk import pass_at_k, pass_hat_k
from uec_recipe.reward import describe_grader

DATA_SOURCE = "uec_demo/digit_sum"
# The demo's data source is graded by the lab's reward module, which the evaluation loads as training does.
DEMO_REWARD = ["--reward-path", "pkg://uec_lab.demo.reward"]
QUESTIONS = [(3, 4), (1, 1), (5, 2), (12, 30)]  # the last is longer, so batches need padding


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random-init Qwen2 with the demo's byte-level BPE tokenizer (ChatML, eos <|im_end|>, left padding)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from uec_lab.demo.build import build_tokenizer

    directory = tmp_path_factory.mktemp("tiny_model")
    tokenizer = build_tokenizer(directory)
    torch.manual_seed(0)
    config = Qwen2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(directory)
    return directory


@pytest.fixture
def eval_parquet(tmp_path):
    """Four digit-sum problems in verl's RL schema."""
    rows = [
        {
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(a + b)},
            "extra_info": {"split": "test", "index": index},
        }
        for index, (a, b) in enumerate(QUESTIONS)
    ]
    path = tmp_path / "digit_sum.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def answer_of(chat):
    a, b = map(int, re.findall(r"\d+", chat[-1]["content"]))
    return a + b


def test_end_to_end_with_a_real_tiny_model(tiny_model, eval_parquet, tmp_path):
    out = tmp_path / "eval"
    argv = ["--model", str(tiny_model), "--data", str(eval_parquet), "--out", str(out), *DEMO_REWARD]
    argv += ["--n", "4", "--temperature", "1.0", "--top-p", "0.95", "--max-new-tokens", "6", "--batch-size", "3"]
    (summary,) = sample.main(argv + ["--save-responses"])

    records = read_jsonl(out / "digit_sum" / "samples.jsonl")
    assert sorted(r["problem_id"] for r in records) == [0, 1, 2, 3]
    for record in records:
        assert record["data_source"] == DATA_SOURCE and record["n"] == 4
        assert len(record["accs"]) == len(record["preds"]) == len(record["responses"]) == 4
        assert record["correct"] == sum(record["accs"])
        assert record["index"] == record["problem_id"]
        assert all(isinstance(text, str) for text in record["responses"])

    on_disk = json.loads((out / "digit_sum" / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["n"] == 4 and on_disk["temperature"] == 1.0 and on_disk["top_p"] == 0.95
    assert on_disk["model"] == str(tiny_model) and on_disk["backend"] == "hf"
    assert on_disk["grader"] == "paper" and on_disk["reward_function"] == "pkg://uec_lab.demo.reward:compute_score"
    assert on_disk["grader_by_data_source"] == {DATA_SOURCE: describe_grader(DATA_SOURCE, "paper")}
    assert on_disk["mm_processor_kwargs"] is None
    assert on_disk["num_problems"] == 4 and on_disk["complete"] is True
    assert list(on_disk["pass@k"]) == ["1", "2", "4"] and list(on_disk["pass^k"]) == ["1", "2", "4"]
    assert on_disk["avg@n"] == pytest.approx(sum(r["correct"] for r in records) / 16)


def test_greedy_out_decodes_greedily_in_the_same_process(tiny_model, eval_parquet, tmp_path):
    out, greedy_out = tmp_path / "eval", tmp_path / "eval_greedy"
    argv = ["--model", str(tiny_model), "--data", str(eval_parquet), "--out", str(out), *DEMO_REWARD]
    argv += ["--n", "2", "--temperature", "1.0", "--max-new-tokens", "6", "--greedy-out", str(greedy_out)]
    sampled, greedy = sample.main(argv)
    assert (sampled["n"], sampled["temperature"]) == (2, 1.0)
    assert (greedy["n"], greedy["temperature"], greedy["top_p"]) == (1, 0.0, 1.0)
    on_disk = json.loads((greedy_out / "digit_sum" / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(greedy)) and on_disk["num_problems"] == 4
    # the same greedy answers as a separate greedy evaluation
    alone = tmp_path / "alone"
    argv = ["--model", str(tiny_model), "--data", str(eval_parquet), "--out", str(alone), *DEMO_REWARD]
    (separate,) = sample.main(argv + ["--n", "1", "--temperature", "0", "--max-new-tokens", "6"])
    assert separate["avg@n"] == greedy["avg@n"]
    with pytest.raises(ValueError, match="--greedy-out must differ from --out"):
        sample.main(
            ["--model", str(tiny_model), "--data", str(eval_parquet), "--out", str(out), "--greedy-out", str(out)]
        )


def test_scoring_path_counts_known_answers(tiny_model, eval_parquet, tmp_path):
    """A fake generator answers problem i correctly i times out of 4; the real scorer must count exactly that."""

    def generate(chats, n):
        responses = []
        for chat in chats:
            problem = QUESTIONS.index(tuple(map(int, re.findall(r"\d+", chat[-1]["content"]))))
            right, wrong = f"so #### {answer_of(chat)}", "#### 100"
            responses.append([right] * problem + [wrong] * (n - problem))
        return responses

    argv = ["--model", str(tiny_model), "--data", str(eval_parquet), "--out", str(tmp_path / "eval"), "--n", "4"]
    (summary,) = sample.main(argv + DEMO_REWARD, generate=generate)
    records = sorted(read_jsonl(tmp_path / "eval" / "digit_sum" / "samples.jsonl"), key=lambda r: r["problem_id"])
    assert [r["correct"] for r in records] == [0, 1, 2, 3]
    assert records[3]["preds"] == ["42", "42", "42", "100"]
    for k in (1, 2, 4):
        expected = sum(pass_at_k(4, c, k) for c in range(4)) / 4
        assert summary["pass@k"][str(k)] == pytest.approx(expected)
        assert summary["pass^k"][str(k)] == pytest.approx(sum(pass_hat_k(4, c, k) for c in range(4)) / 4)
    assert summary["avg@n"] == pytest.approx(6 / 16)


def test_resume_after_interruption_does_not_resample(tiny_model, eval_parquet, tmp_path, monkeypatch):
    calls = []
    original = HFSampler.__call__

    def counting(self, chats, n):
        if len(calls) == 1 and fail_second_call:
            raise KeyboardInterrupt("simulated kill after the first batch")
        calls.append([chat[-1]["content"] for chat in chats])
        return original(self, chats, n)

    monkeypatch.setattr(HFSampler, "__call__", counting)
    out = tmp_path / "eval"
    argv = ["--model", str(tiny_model), "--data", str(eval_parquet), "--out", str(out), *DEMO_REWARD]
    argv += ["--n", "2", "--temperature", "1.0", "--max-new-tokens", "4", "--batch-size", "2"]

    fail_second_call = True
    with pytest.raises(KeyboardInterrupt):
        sample.main(argv)
    first = read_jsonl(out / "digit_sum" / "samples.jsonl")
    assert sorted(r["problem_id"] for r in first) == [0, 1]

    fail_second_call = False
    calls.clear()
    (summary,) = sample.main(argv)
    assert calls == [["What is 5 + 2?", "What is 12 + 30?"]]  # only the unfinished problems were sampled
    final = read_jsonl(out / "digit_sum" / "samples.jsonl")
    assert sorted(r["problem_id"] for r in final) == [0, 1, 2, 3]
    assert final[:2] == first
    assert summary["num_problems"] == 4 and summary["complete"]

    calls.clear()
    sample.main(argv)
    assert calls == []  # nothing left to do


def test_max_problems_then_resume_and_torn_last_line(tiny_model, eval_parquet, tmp_path):
    seen = []

    def generate(chats, n):
        seen.extend(chat[-1]["content"] for chat in chats)
        return [[f"#### {answer_of(chat)}"] * n for chat in chats]

    out = tmp_path / "eval"
    argv = ["--model", str(tiny_model), "--data", str(eval_parquet), "--out", str(out), "--n", "2", *DEMO_REWARD]
    (partial,) = sample.main(argv + ["--max-problems", "3"], generate=generate)
    assert partial["num_problems"] == 3 and partial["complete"] is False
    samples = out / "digit_sum" / "samples.jsonl"
    lines = samples.read_text().splitlines()
    samples.write_text("\n".join(lines[:2]) + "\n" + lines[2][:15])  # killed while writing problem 2

    seen.clear()
    (summary,) = sample.main(argv, generate=generate)
    assert seen == ["What is 5 + 2?", "What is 12 + 30?"]
    assert sorted(r["problem_id"] for r in read_jsonl(samples)) == [0, 1, 2, 3]
    assert summary["avg@n"] == 1.0 and summary["complete"] is True


def test_mismatched_settings_in_existing_output_are_refused(tiny_model, eval_parquet, tmp_path):
    def generate(chats, n):
        return [["#### 0"] * n for _ in chats]

    base = ["--model", str(tiny_model), "--data", str(eval_parquet), "--out", str(tmp_path / "eval"), *DEMO_REWARD]
    sample.main(base + ["--n", "2", "--temperature", "0.6"], generate=generate)
    with pytest.raises(ValueError, match="n: existing 2 vs requested 4"):
        sample.main(base + ["--n", "4", "--temperature", "0.6"], generate=generate)
    with pytest.raises(ValueError, match="temperature: existing 0.6 vs requested 1.0"):
        sample.main(base + ["--n", "2", "--temperature", "1.0"], generate=generate)
    frame = pd.read_parquet(eval_parquet)
    frame.at[0, "reward_model"] = {"style": "rule", "ground_truth": "8"}  # the data changed under the run
    frame.to_parquet(eval_parquet, index=False)
    with pytest.raises(ValueError, match="data_fingerprint"):
        sample.main(base + ["--n", "2", "--temperature", "0.6"], generate=generate)


def test_bad_inputs_fail_before_the_model_loads(tiny_model, eval_parquet, tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded for bad inputs")

    monkeypatch.setattr(sample, "HFSampler", no_model)
    base = ["--model", str(tiny_model), "--out", str(tmp_path / "eval"), *DEMO_REWARD]
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        sample.main(base + ["--data", str(eval_parquet), str(tmp_path / "missing.parquet")])

    no_reward = tmp_path / "no_reward.parquet"
    pd.DataFrame({"data_source": [DATA_SOURCE], "prompt": [[{"role": "user", "content": "hi"}]]}).to_parquet(no_reward)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['reward_model'\]"):
        sample.main(base + ["--data", str(no_reward)])
    with pytest.raises(FileNotFoundError, match="model path not found"):
        sample.main(["--model", str(tmp_path / "nope"), "--data", str(eval_parquet), "--out", str(tmp_path / "e")])
    with pytest.raises(ValueError, match="greedy"):
        sample.main(base + ["--data", str(eval_parquet), "--temperature", "0", "--n", "4"])


def test_verl_checkpoint_layouts(tmp_path):
    root = tmp_path / "checkpoints"
    hf_dir = root / "global_step_5" / "actor" / "huggingface"
    hf_dir.mkdir(parents=True)
    (hf_dir / "config.json").write_text("{}")
    (root / "latest_checkpointed_iteration.txt").write_text("5")
    # verl always writes config + tokenizer there; the weights only with save_contents including hf_model.
    with pytest.raises(ValueError, match="verl.model_merger merge"):
        resolve_model_path(root)
    (hf_dir / "model.safetensors").write_bytes(b"")
    for given in (root, root / "global_step_5", root / "global_step_5" / "actor", hf_dir):
        assert resolve_model_path(given) == str(hf_dir)
    assert resolve_model_path("Qwen/Qwen2.5-Math-7B") == "Qwen/Qwen2.5-Math-7B"  # hub id passes through
    with pytest.raises(ValueError, match="neither"):
        resolve_model_path(tmp_path)


def test_multimodal_chat_for_vllm():
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, format="JPEG")
    chat = [{"role": "user", "content": "<image>Find x."}]
    (message,) = multimodal_chat(chat, [{"bytes": buffer.getvalue(), "path": None}])
    url = message["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == buffer.getvalue()
    assert message["content"][1] == {"type": "text", "text": "Find x."}
    with pytest.raises(ValueError, match="without an <image> marker"):
        multimodal_chat([{"role": "user", "content": "no marker"}], [{"bytes": b"x"}])


def test_left_padding_gives_each_prompt_the_same_greedy_answer_as_alone(tiny_model):
    """Batched generation is only right if padding goes left: a short prompt batched with a long one must decode
    exactly as it does alone (greedy, so the comparison is deterministic)."""
    sampler = HFSampler(str(tiny_model), temperature=0.0, top_p=1.0, max_new_tokens=6)
    short = [{"role": "user", "content": "What is 1 + 1?"}]
    long = [{"role": "user", "content": "What is 12 + 30 + 45 + 7 + 8 + 9?"}]
    alone = sampler([short], 1)
    batched = sampler([long, short], 1)
    assert batched[1] == alone[0]
    assert sampler.tokenizer.padding_side == "left"


# --- graders ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def geometry_text_parquet(tmp_path):
    """Three angle questions graded like Geometry3K (text only, so the hf path can score them)."""
    rows = [
        {
            "data_source": "hiyouga/geometry3k",
            "prompt": [{"role": "user", "content": f"Find angle {index}."}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": gold},
            "extra_info": {"split": "test", "index": index},
        }
        for index, gold in enumerate(["30", "34", "45"])
    ]
    path = tmp_path / "angles.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def angle_answers(chats, n):
    # Right answers written the way models write them: a Unicode degree sign, the angle named first, plain.
    answers = {"Find angle 0.": "\\boxed{30°}", "Find angle 1.": "\\boxed{\\angle 1 = 34^\\circ}"}
    return [[answers.get(chat[-1]["content"], "\\boxed{45}")] * n for chat in chats]


def test_grader_is_chosen_recorded_and_guarded(tiny_model, geometry_text_parquet, tmp_path):
    base = ["--model", str(tiny_model), "--data", str(geometry_text_parquet), "--n", "2"]
    (paper,) = sample.main(base + ["--out", str(tmp_path / "paper")], generate=angle_answers)
    (robust,) = sample.main(base + ["--out", str(tmp_path / "robust"), "--grader", "robust"], generate=angle_answers)
    # mathruler (the authors' scoring) reads neither answer; the robust grader reads both.
    assert (paper["grader"], paper["avg@n"]) == ("paper", pytest.approx(1 / 3))
    assert (robust["grader"], robust["avg@n"]) == ("robust", 1.0)
    assert "EFRame examples/score_function/math.py" in paper["grader_by_data_source"]["hiyouga/geometry3k"]
    assert robust["grader_by_data_source"]["hiyouga/geometry3k"].startswith("robust:")
    run_info = json.loads((tmp_path / "robust" / "angles" / "run.json").read_text())
    assert run_info["grader"] == "robust"
    with pytest.raises(ValueError, match="grader: existing 'robust' vs requested 'paper'"):
        sample.main(base + ["--out", str(tmp_path / "robust")], generate=angle_answers)


def test_unknown_data_source_fails_before_the_model_loads(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(sample, "resolve_model_path", lambda path: pytest.fail("model resolved before the check"))
    rows = [
        {
            "data_source": "my_lab/unregistered",
            "prompt": [{"role": "user", "content": "hi"}],
            "reward_model": {"style": "rule", "ground_truth": "1"},
        }
    ]
    path = tmp_path / "mine.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    with pytest.raises(ValueError, match="mine.parquet: .*unknown data_source 'my_lab/unregistered'"):
        sample.main(["--model", str(tiny_model), "--data", str(path), "--out", str(tmp_path / "e")])


def test_reward_path_takes_a_file_or_a_package_and_names_a_bad_one(tmp_path):
    from uec_lab.demo import reward as demo_reward

    assert sample.load_score_fn("pkg://uec_lab.demo.reward") is demo_reward.compute_score
    by_file = sample.load_score_fn(demo_reward.__file__)
    assert by_file(DATA_SOURCE, "#### 7", "7")["acc"] == 1.0
    with pytest.raises(ModuleNotFoundError, match="--reward-path pkg://no_such_pkg.reward: no importable package"):
        sample.load_score_fn("pkg://no_such_pkg.reward")
    with pytest.raises(FileNotFoundError, match="--reward-path .*nothing.py: no such file"):
        sample.load_score_fn(str(tmp_path / "nothing.py"))


# --- vLLM: the training run's image processor settings --------------------------------------------------------------


class FakeLLM:
    """Stands in for vllm.LLM (vLLM cannot run on CPU): records its constructor arguments and the chats it gets."""

    instances = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.chats = []
        FakeLLM.instances.append(self)

    def chat(self, chats, params, use_tqdm=False):
        from types import SimpleNamespace

        self.chats.extend(chats)
        return [SimpleNamespace(outputs=[SimpleNamespace(text="\\boxed{34}")] * params.n) for _ in chats]


@pytest.fixture
def fake_vllm(monkeypatch):
    import sys
    import types

    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = lambda **kwargs: types.SimpleNamespace(**kwargs)
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.instances = []
    return FakeLLM


@pytest.fixture
def geo3k_image_parquet(tmp_path):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (255, 255, 255)).save(buffer, format="PNG")
    rows = [
        {
            "data_source": "hiyouga/geometry3k",
            "prompt": [{"role": "user", "content": "<image>Find m \\angle 2."}],
            "images": [{"bytes": buffer.getvalue(), "path": None}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": "34"},
            "extra_info": {"split": "test", "index": 0},
        }
    ]
    path = tmp_path / "geo3k_test.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


PIXELS = {"min_pixels": 262144, "max_pixels": 4194304}  # run_scripts/gpu/geo3k_base.sh


def test_mm_processor_kwargs_reach_vllm_and_the_summary(fake_vllm, geo3k_image_parquet, tmp_path):
    out = tmp_path / "eval"
    argv = ["--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--data", str(geo3k_image_parquet), "--out", str(out)]
    argv += ["--backend", "vllm", "--n", "2", "--temperature", "0.5", "--seed", "3"]
    (summary,) = sample.main(argv + ["--mm-processor-kwargs", json.dumps(PIXELS)])
    (llm,) = fake_vllm.instances
    assert llm.kwargs == {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "seed": 3,
        "tensor_parallel_size": 1,
        "mm_processor_kwargs": PIXELS,
    }
    (chat,) = llm.chats
    assert [part["type"] for part in chat[0]["content"]] == ["image_url", "text"]
    assert summary["mm_processor_kwargs"] == PIXELS and summary["avg@n"] == 1.0
    assert json.loads((out / "geo3k_test" / "summary.json").read_text())["mm_processor_kwargs"] == PIXELS
    assert json.loads((out / "geo3k_test" / "run.json").read_text())["mm_processor_kwargs"] == PIXELS
    # Other image settings mean other samples: resuming into the same folder is refused.
    with pytest.raises(ValueError, match="mm_processor_kwargs: existing"):
        sample.main(argv + ["--mm-processor-kwargs", '{"min_pixels": 3136, "max_pixels": 12544}'])


def test_without_mm_processor_kwargs_vllm_keeps_its_defaults_and_says_so(fake_vllm, geo3k_image_parquet, tmp_path):
    import contextlib
    import io

    argv = ["--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--data", str(geo3k_image_parquet)]
    argv += ["--out", str(tmp_path / "eval"), "--backend", "vllm", "--n", "1", "--temperature", "0"]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        (summary,) = sample.main(argv)
    assert "mm_processor_kwargs" not in fake_vllm.instances[0].kwargs
    assert summary["mm_processor_kwargs"] is None
    assert "no --mm-processor-kwargs" in stderr.getvalue()


@pytest.mark.parametrize(
    "value, backend, message",
    [
        ("min_pixels=1", "vllm", "must be JSON"),
        ("[1, 2]", "vllm", "non-empty JSON object"),
        ("{}", "vllm", "non-empty JSON object"),
        ('{"min_pixels": -1}', "vllm", "min_pixels must be a positive integer"),
        ('{"max_pixels": "big"}', "vllm", "max_pixels must be a positive integer"),
        ('{"min_pixels": 100, "max_pixels": 10}', "vllm", "min_pixels 100 exceeds max_pixels 10"),
        (json.dumps(PIXELS), "hf", "applies to --backend vllm only"),
    ],
)
def test_bad_mm_processor_kwargs(fake_vllm, geo3k_image_parquet, tmp_path, value, backend, message):
    argv = ["--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--data", str(geo3k_image_parquet), "--out", str(tmp_path)]
    with pytest.raises(ValueError, match=message):
        sample.main(argv + ["--backend", backend, "--mm-processor-kwargs", value])
    assert fake_vllm.instances == []
