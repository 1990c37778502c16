"""data_prep.prepare end to end on raw-format fixtures: schema, prompt template, ground truths, verl loading, CLI."""

import io
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from data_prep import prepare
from data_prep.prepare import main
from data_prep.sources import DATASETS, MULTIPLE_CHOICE_SUFFIX, THINK_BOXED_SUFFIX
from uec_recipe.data_schema import validate_rl_parquet
from uec_recipe.reward import compute_score

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# NAME -> (ground truths in order, answer types in order)
EXPECTED = {
    "geo3k_train": (["5.8", "3\\sqrt{2}"], ["free_form"] * 2),
    "geo3k_test": (["34"], ["free_form"]),
    "dapo_math_17k": (["2", "4"], ["free_form"] * 2),
    "math12k_train": (["\\frac{3}{4}", "2"], ["free_form"] * 2),
    "aime2024": (["24"], ["free_form"]),
    "aime2025": (["63"], ["free_form"]),
    "amc2023": (["6"], ["free_form"]),
    "math500": (["3\\sqrt{2}"], ["free_form"]),
    "minerva_math": (["10"], ["free_form"]),
    "olympiadbench": (["3,-3", "4"], ["free_form"] * 2),
    "gsm8k_test": (["72", "2000"], ["free_form"] * 2),
    "mmlu": (["C"], ["multiple_choice"]),
    "mathvista_testmini": (["B", "2.5"], ["multiple_choice", "free_form"]),
    "mathverse_testmini": (["B", "45"], ["multiple_choice", "free_form"]),
    "math_vision": (["C", "7"], ["multiple_choice", "free_form"]),
    "wemath_testmini": (["B"], ["multiple_choice"]),
}


def test_every_dataset_has_a_fixture_and_an_expectation(raw_sources):
    assert set(EXPECTED) == set(DATASETS) == set(raw_sources)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_converted_rows(name, prepared, read_rows):
    spec = DATASETS[name]
    golds, answer_types = EXPECTED[name]
    assert validate_rl_parquet(prepared[name], require_images=spec.has_images) == len(golds)
    rows = read_rows(prepared[name])
    assert [row["reward_model"] for row in rows] == [{"style": "rule", "ground_truth": g} for g in golds]
    assert [row["extra_info"]["answer_type"] for row in rows] == answer_types
    for row in rows:
        assert row["data_source"] == spec.source_id and row["ability"] == "math"
        assert row["extra_info"]["split"] == spec.split and isinstance(row["extra_info"]["index"], int)
        (message,) = row["prompt"]
        assert message["role"] == "user"
        suffix = MULTIPLE_CHOICE_SUFFIX if row["extra_info"]["answer_type"] == "multiple_choice" else THINK_BOXED_SUFFIX
        assert message["content"].endswith(suffix)
        assert message["content"].count("<image>") == len(row.get("images") or [])
        if spec.has_images:
            assert message["content"].startswith("<image>")
            from PIL import Image

            for image in row["images"]:
                with Image.open(io.BytesIO(image["bytes"])) as decoded:
                    decoded.load()
                    assert decoded.size in {(6, 5)}
        else:
            assert "images" not in row


def test_prompt_template_exact(prepared, read_rows):
    geo = read_rows(prepared["geo3k_train"])[0]["prompt"][0]["content"]
    assert geo == (
        "<image>Find x. Round to the nearest tenth. "
        "You FIRST think about the reasoning process as an internal monologue "
        "and then provide the final answer. The reasoning process MUST BE enclosed within <think> </think> tags. "
        "The final answer MUST BE put in \\boxed{}."
    )
    mmlu = read_rows(prepared["mmlu"])[0]["prompt"][0]["content"]
    assert mmlu == "What is 2+2?\nA. 3\nB. 5\nC. 4\nD. 22\n" + MULTIPLE_CHOICE_SUFFIX
    # MATH-Vision's "<image1>" tokens become verl's single "<image>" placeholder at the front.
    vision = read_rows(prepared["math_vision"])[1]["prompt"][0]["content"]
    assert vision.startswith("<image>How many dots are there? ") and vision.count("<image") == 1
    # MathVerse "Vision Only": empty text question, the question is in the image.
    verse = read_rows(prepared["mathverse_testmini"])[1]["prompt"][0]["content"]
    assert verse.startswith("<image>Answer the question shown in the image. ")
    # DAPO's own "Answer:" instruction is cut away; only the problem and the paper's suffix remain.
    dapo = read_rows(prepared["dapo_math_17k"])[0]["prompt"][0]["content"]
    assert dapo == "What is $1+1$? " + THINK_BOXED_SUFFIX
    # MathVista floats say how many decimals the gold has.
    vista = read_rows(prepared["mathvista_testmini"])[1]["prompt"][0]["content"]
    assert "(Give the answer to 1 decimal place.)" in vista


# The authors' format prompt exactly as their scripts write it (github.com/597358816/EFRame examples/qwen2.5-vl-7b.sh
# and examples/qwen2.5-math-7b.sh: FORMAT_PROMPT="""...""", two lines, the second starting with a space).
AUTHORS_FORMAT_PROMPT_SHELL_VALUE = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer.\n"
    " The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}."
)


def authors_prompt(problem: str) -> str:
    """What the authors' trainer builds from a problem: their main() reads data.format_prompt=... with
    OmegaConf.from_cli (EFRame verl/trainer/main.py), RLHFDataset appends it as prompt + " " + format_prompt.strip()
    (EFRame verl/utils/dataset.py)."""
    from omegaconf import OmegaConf

    format_prompt = OmegaConf.from_cli(["data.format_prompt=" + AUTHORS_FORMAT_PROMPT_SHELL_VALUE]).data.format_prompt
    return problem + " " + format_prompt.strip()


def test_prompt_matches_the_authors_byte_for_byte(prepared, read_rows):
    # The script's line break never reaches the model: YAML folds it into one space.
    assert "\n" not in authors_prompt("x")
    geo = read_rows(prepared["geo3k_train"])
    assert [row["prompt"][0]["content"] for row in geo] == [
        authors_prompt("<image>Find x. Round to the nearest tenth."),
        authors_prompt("<image>Find the length of A B."),
    ]
    math12k = read_rows(prepared["math12k_train"])
    # A question with a line break is still joined with one space, as EasyR1 and verl do.
    assert math12k[1]["prompt"][0]["content"] == authors_prompt("Let $x>0$.\nSolve $x^2=4$.")


def test_build_prompt_keeps_a_placeholder_question_verbatim():
    from data_prep.sources import Problem, build_prompt

    # Geometry3K's problem already holds verl's placeholder: kept as is, white space included, as EasyR1 keeps it.
    (message,) = build_prompt(Problem("<image>Find x. ", "5", images=[b"png"]))
    assert message["content"] == "<image>Find x.  " + THINK_BOXED_SUFFIX
    # Other image tokens are replaced by placeholders in front; an empty question names the image.
    (message,) = build_prompt(Problem("Count the dots.<image1>", "7", images=[b"png"]))
    assert message["content"] == "<image>Count the dots. " + THINK_BOXED_SUFFIX
    (message,) = build_prompt(Problem("", "7", images=[b"png"]))
    assert message["content"] == "<image>Answer the question shown in the image. " + THINK_BOXED_SUFFIX


@pytest.mark.parametrize(
    "value, expected",
    [
        ("$3$", "3"),
        ("$3$ and $5$", "3 and 5"),
        ("$x=\\frac{1}{2}$, $y=2$", "x=\\frac{1}{2}, y=2"),
        ("$$x^2$$", "x^2"),
        ("\\$5", "\\$5"),
        ("$\\$5$", "\\$5"),
        ("costs $5", "costs $5"),
        (27.0, "27"),
        (2.5, "2.5"),
        (" 3,-3 ", "3,-3"),
    ],
)
def test_answer_text_removes_math_delimiters_only(value, expected):
    from data_prep.sources import answer_text

    assert answer_text(value) == expected


@pytest.mark.parametrize("value", [None, "", "$$", " $ $ "])
def test_answer_text_without_an_answer_is_dropped(value):
    from data_prep.sources import Drop, answer_text

    with pytest.raises(Drop, match="no ground truth"):
        answer_text(value)


def test_olympiadbench_reads_only_its_config(prepared, read_rows):
    assert [row["extra_info"]["question"] for row in read_rows(prepared["olympiadbench"])] == [
        "Find all real $x$ with $x^2=9$.",
        "Compute $2+2$.",
    ]


def test_dapo_deduplicates_and_reports(raw_sources, tmp_path, capsys):
    assert main(["dapo_math_17k", "--out", str(tmp_path), "--local-dir", raw_sources["dapo_math_17k"], "--quiet"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "wrote 2 rows" in summary and "5 read; dropped 3" in summary
    assert "2 duplicate problem" in summary and "1 duplicate problem with a different answer" in summary
    rows = pq.read_table(tmp_path / "dapo_math_17k.parquet").to_pylist()
    assert [row["extra_info"]["source_index"] for row in rows] == ["uuid-0", "uuid-1"]


@pytest.mark.parametrize("grader", ["paper", "robust"])
def test_gold_answers_score_one_with_the_project_reward(prepared, read_rows, grader):
    # The ground truth of every prepared row, boxed, must earn reward 1 from uec_recipe.reward under either grader (a
    # converter/reward mismatch - a letter vs. option text, a stray "$" - would silently zero an eval).
    for name, path in prepared.items():
        for row in read_rows(path):
            gold = row["reward_model"]["ground_truth"]
            response = f"<think>...</think> \\boxed{{{gold}}}"
            result = compute_score(row["data_source"], response, gold, row["extra_info"], grader=grader)
            assert result["acc"] == 1.0, (name, gold)


def test_choice_rows_store_their_options_for_the_robust_grader(prepared, read_rows):
    # NAME -> (row, options in letter order); MathVerse writes its options inside the question, so it has none.
    expected = {
        "mmlu": (0, ["3", "5", "4", "22"]),
        "mathvista_testmini": (0, ["blue", "red", "green"]),
        "math_vision": (0, ["circle", "square", "star", "moon", "sun"]),
        "wemath_testmini": (0, ["2π", "4π", "8π", "16π", "No correct answer"]),
    }
    for name, (index, options) in expected.items():
        row = read_rows(prepared[name])[index]
        assert row["extra_info"]["options"] == options, name
        gold = row["reward_model"]["ground_truth"]
        gold_text = options["ABCDEFGHIJ".index(gold)]
        wrong_text = next(option for option in options if option != gold_text)
        score = lambda answer: compute_score(  # noqa: E731
            row["data_source"], f"\\boxed{{{answer}}}", gold, row["extra_info"], grader="robust"
        )["acc"]
        assert (score(gold_text), score(f"{gold}. {gold_text}"), score(wrong_text)) == (1.0, 1.0, 0.0), name
    free_form = read_rows(prepared["mathvista_testmini"])[1]["extra_info"]
    assert free_form["answer_type"] == "free_form" and free_form.get("options") is None


def test_verl_rlhf_dataset_loads_text_output(prepared, tiny_chat_tokenizer, tmp_path):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = OmegaConf.create(
        {
            "max_prompt_length": 2048,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": 1,
            "cache_dir": str(tmp_path / "verl_cache"),
            "return_raw_chat": True,
        }
    )
    dataset = RLHFDataset([prepared["gsm8k_test"], prepared["math500"]], tiny_chat_tokenizer, config, processor=None)
    assert len(dataset) == 3  # nothing filtered as overlong
    item = dataset[0]
    assert item["raw_prompt"][0]["content"].endswith(THINK_BOXED_SUFFIX)
    assert item["reward_model"]["ground_truth"] == "72" and item["data_source"] == "openai/gsm8k"
    assert item["index"] == 0


def test_verl_rlhf_dataset_image_path(prepared, tmp_path):
    # A Qwen2-VL processor cannot be built here (qwen_vl_utils needs torchvision, absent from the CPU install), so we
    # drive the part of RLHFDataset that consumes our images column: it reads the parquet (our HF Image metadata makes
    # the images arrive as PIL images, as from verl's geo3k.py) and pairs each "<image>" with one image.
    from omegaconf import OmegaConf
    from PIL import Image
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = OmegaConf.create({"filter_overlong_prompts": False, "cache_dir": str(tmp_path / "verl_cache")})
    for name in ("geo3k_train", "mathvista_testmini", "mathverse_testmini", "math_vision", "wemath_testmini"):
        dataset = RLHFDataset(prepared[name], None, config, processor=None)
        row = dataset.dataframe[0]
        assert all(isinstance(image, Image.Image) for image in row["images"]), name
        dataset.processor = object()  # only its presence is asserted before images are paired
        messages = dataset._build_messages(dict(row), "prompt")
        kinds = [part["type"] for part in messages[0]["content"]]
        assert kinds == ["image", "text"], name
        assert messages[0]["content"][0]["image"].size == (6, 5)


# --- command line -----------------------------------------------------------------------------------------------------


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "data_prep.prepare", *args], cwd=REPO_ROOT, capture_output=True, text=True
    )


def test_unknown_name_exits_2(tmp_path):
    result = run_cli("imagenet", "--out", str(tmp_path))
    assert result.returncode == 2 and "invalid choice: 'imagenet'" in result.stderr
    assert os.listdir(tmp_path) == []


def test_missing_local_dir_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["aime2024", "--out", str(tmp_path), "--local-dir", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--local-dir" in error and "no such file or folder" in error


def test_refuses_to_overwrite_without_flag(raw_sources, tmp_path, capsys):
    out = tmp_path / "aime2024.parquet"
    out.write_bytes(b"precious")
    with pytest.raises(SystemExit) as exit_info:
        main(["aime2024", "--out", str(tmp_path), "--local-dir", raw_sources["aime2024"], "--quiet"])
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert (
        main(["aime2024", "--out", str(tmp_path), "--local-dir", raw_sources["aime2024"], "--quiet", "--overwrite"])
        == 0
    )
    assert validate_rl_parquet(out) == 1


def test_split_option_names_the_output(raw_sources, tmp_path):
    assert (
        main(
            [
                "geo3k_train",
                "--out",
                str(tmp_path),
                "--local-dir",
                raw_sources["geo3k_train"],
                "--split",
                "test",
                "--quiet",
            ]
        )
        == 0
    )
    rows = pq.read_table(tmp_path / "geo3k_train.test.parquet").to_pylist()
    assert [row["reward_model"]["ground_truth"] for row in rows] == ["34"]
    assert rows[0]["extra_info"]["split"] == "test"


def test_missing_split_in_local_dir_is_a_clear_failure(raw_sources, tmp_path, capsys):
    assert (
        main(
            [
                "geo3k_train",
                "--out",
                str(tmp_path),
                "--local-dir",
                raw_sources["geo3k_train"],
                "--split",
                "dev",
                "--quiet",
            ]
        )
        == 1
    )
    assert "no data file for split 'dev'" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_interrupted_write_leaves_nothing(raw_sources, tmp_path, monkeypatch):
    real_write_table = pq.write_table

    def write_then_die(table, where, **kwargs):
        real_write_table(table, where, **kwargs)
        raise KeyboardInterrupt  # killed after the bytes hit the disk, before the rename

    monkeypatch.setattr(pq, "write_table", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        main(["math500", "--out", str(tmp_path), "--local-dir", raw_sources["math500"], "--quiet"])
    assert os.listdir(tmp_path) == []


def test_invalid_output_is_not_renamed_into_place(raw_sources, tmp_path, monkeypatch, capsys):
    # A converter bug that produced an empty ground truth must fail validation of the temporary file, not ship it.
    from data_prep import sources

    spec = DATASETS["math500"]
    broken = sources.DatasetSpec(**{**spec.__dict__, "convert": lambda record, ctx: sources.Problem("What?", " ")})
    monkeypatch.setitem(prepare.DATASETS, "math500", broken)
    assert main(["math500", "--out", str(tmp_path), "--local-dir", raw_sources["math500"], "--quiet"]) == 1
    assert "missing or empty ground truth at row(s) 0" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_answer_not_among_options_fails_loudly(tmp_path, png, capsys):
    import datasets

    source = tmp_path / "mathvista" / "testmini.parquet"
    source.parent.mkdir()
    datasets.Dataset.from_dict(
        {
            "pid": ["9"],
            "question": ["Which?"],
            "decoded_image": [{"bytes": png(), "path": None}],
            "choices": [["x", "y"]],
            "answer": ["z"],
            "question_type": ["multi_choice"],
            "answer_type": ["text"],
            "precision": [None],
        },
        features=datasets.Features(
            {
                "pid": datasets.Value("string"),
                "question": datasets.Value("string"),
                "decoded_image": datasets.Image(),
                "choices": datasets.List(datasets.Value("string")),
                "answer": datasets.Value("string"),
                "question_type": datasets.Value("string"),
                "answer_type": datasets.Value("string"),
                "precision": datasets.Value("float64"),
            }
        ),
    ).to_parquet(str(source))
    out = tmp_path / "out"
    assert main(["mathvista_testmini", "--out", str(out), "--local-dir", str(source.parent), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "AI4Math/MathVista testmini row 0" in error and "answer 'z' is not one of the options" in error
    assert not out.exists() or os.listdir(out) == []


def test_default_source_is_the_hub_dataset(tmp_path, png, monkeypatch):
    # Without --local-dir the converter asks datasets.load_dataset for the canonical id, config and split.
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict(
            {"question": ["What is 2+2?"], "subject": ["x"], "choices": [["1", "4", "3", "2"]], "answer": [1]},
            features=datasets.Features(
                {
                    "question": datasets.Value("string"),
                    "subject": datasets.Value("string"),
                    "choices": datasets.List(datasets.Value("string")),
                    "answer": datasets.ClassLabel(names=["A", "B", "C", "D"]),
                }
            ),
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert main(["mmlu", "--out", str(tmp_path), "--quiet"]) == 0
    assert calls == [("cais/mmlu", "all", "test")]
    assert pq.read_table(tmp_path / "mmlu.parquet").to_pylist()[0]["reward_model"]["ground_truth"] == "B"


def test_hub_failure_is_reported_with_the_way_out(tmp_path, monkeypatch, capsys):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert main(["aime2024", "--out", str(tmp_path), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "could not load HuggingFaceH4/aime_2024 split 'train' from the hub" in error and "--local-dir" in error


def test_prepare_all_covers_every_dataset_and_resumes(tmp_path):
    for name in DATASETS:
        (tmp_path / f"{name}.parquet").write_bytes(b"already prepared")
    result = subprocess.run(
        ["bash", os.path.join(REPO_ROOT, "data_prep", "prepare_all.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stderr
    skipped = [line.split(":")[0] for line in result.stdout.splitlines() if "skipped" in line]
    assert skipped == list(DATASETS)


# --- --local-dir on the published hub layouts -------------------------------------------------------------------------


def _copy(source: str, destination) -> None:
    import shutil

    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)


def test_local_dir_dapo_folder_with_its_one_data_file(raw_sources, tmp_path, capsys):
    # The hub repository holds data/dapo-math-17k.parquet: no split in the name, the only data file.
    folder = tmp_path / "DAPO-Math-17k"
    _copy(raw_sources["dapo_math_17k"], folder / "data" / "dapo-math-17k.parquet")
    (folder / "README.md").write_text("card")
    (folder / "dataset_infos.json").write_text("{}")  # metadata, not rows
    out = tmp_path / "out"
    assert main(["dapo_math_17k", "--out", str(out), "--local-dir", str(folder), "--quiet"]) == 0
    assert "wrote 2 rows" in capsys.readouterr().out
    assert validate_rl_parquet(out / "dapo_math_17k.parquet") == 2


def test_local_dir_olympiadbench_hub_layouts(raw_sources, tmp_path, read_rows):
    ours = os.path.join(raw_sources["olympiadbench"], "OE_TO_maths_en_COMP", "train-00000-of-00001.parquet")
    other = os.path.join(raw_sources["olympiadbench"], "OE_TO_maths_zh_COMP", "train-00000-of-00001.parquet")
    # The repository: OlympiadBench/<config>/<config>.parquet, one folder per config.
    published = tmp_path / "published"
    _copy(ours, published / "OlympiadBench" / "OE_TO_maths_en_COMP" / "OE_TO_maths_en_COMP.parquet")
    _copy(other, published / "OlympiadBench" / "OE_TO_maths_zh_COMP" / "OE_TO_maths_zh_COMP.parquet")
    # The hub's auto-converted parquet branch: <config>/<split>/0000.parquet.
    converted = tmp_path / "converted"
    _copy(ours, converted / "OE_TO_maths_en_COMP" / "train" / "0000.parquet")
    _copy(other, converted / "OE_TO_maths_zh_COMP" / "train" / "0000.parquet")
    for layout in (published, converted):
        out = tmp_path / f"out_{layout.name}"
        assert main(["olympiadbench", "--out", str(out), "--local-dir", str(layout), "--quiet"]) == 0, layout
        questions = [row["extra_info"]["question"] for row in read_rows(out / "olympiadbench.parquet")]
        assert questions == ["Find all real $x$ with $x^2=9$.", "Compute $2+2$."], layout


def test_local_dir_that_cannot_be_resolved_fails_clearly(raw_sources, tmp_path, capsys):
    # Two unnamed data files: which one is the split is not ours to guess.
    folder = tmp_path / "two"
    _copy(raw_sources["dapo_math_17k"], folder / "data" / "part-a.parquet")
    _copy(raw_sources["dapo_math_17k"], folder / "data" / "part-b.parquet")
    assert main(["dapo_math_17k", "--out", str(tmp_path / "out"), "--local-dir", str(folder), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "no data file for split 'train'" in error and "part-a.parquet" in error and "--local-dir" in error
    # A lone unnamed file is the default split only, never another one.
    single = tmp_path / "single"
    _copy(raw_sources["dapo_math_17k"], single / "data" / "dapo-math-17k.parquet")
    argv = ["dapo_math_17k", "--out", str(tmp_path / "out"), "--local-dir", str(single), "--split", "test"]
    assert main(argv + ["--quiet"]) == 1
    assert "no data file for split 'test'" in capsys.readouterr().err
