"""Hand-written fixtures in each source's real raw layout, converted once per session by the real CLI code.

Each source gets a few rows with the columns its hub card lists, written the way the hub stores it (HF parquet with
Image features, jsonl, or a save_to_disk folder), so the --local-dir path of ``data_prep.prepare`` is exercised end to
end. Images are tiny PNGs drawn with PIL at test time.
"""

from __future__ import annotations

import io
import os
import sys

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if REPO_ROOT not in sys.path:  # --import-mode=importlib does not put the repository on sys.path
    sys.path.insert(0, REPO_ROOT)

DAPO_INSTRUCTION = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
DAPO_REMINDER = '\n\nRemember to put your answer on its own line after "Answer:".'


def png_bytes(color=(200, 30, 30), size=(6, 5)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_parquet(path: str, rows: dict, features: dict | None = None) -> None:
    import datasets

    os.makedirs(os.path.dirname(path), exist_ok=True)
    dataset = datasets.Dataset.from_dict(rows, features=datasets.Features(features) if features else None)
    dataset.to_parquet(path)


def _write_jsonl(path: str, rows: list[dict]) -> None:
    import json

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def build_raw_sources(root: str) -> dict[str, str]:
    """Write every source's fixture under ``root``; returns NAME -> --local-dir argument."""
    import datasets

    V, Image, List = datasets.Value, datasets.Image, datasets.List
    img = {"bytes": png_bytes(), "path": None}
    img2 = {"bytes": png_bytes((20, 160, 40)), "path": None}
    local = {}

    # hiyouga/geometry3k: data/{train,validation,test}-00000-of-00001.parquet
    geo = os.path.join(root, "geometry3k")
    geo_features = {
        "images": List(Image()),
        "problem": V("string"),
        "answer": V("string"),
        "id": V("int64"),
        "choices": List(V("string")),
        "ground_truth": V("string"),
    }
    _write_parquet(
        os.path.join(geo, "data", "train-00000-of-00001.parquet"),
        {
            "images": [[img], [img2]],
            "problem": ["<image>Find x. Round to the nearest tenth.", "<image>Find the length of A B."],
            "answer": ["5.8", "3\\sqrt{2}"],
            "id": [0, 1],
            "choices": [["5.8", "6.5", "14.2", "44.3"], ["3", "3\\sqrt{2}", "6", "9"]],
            "ground_truth": ["A", "B"],
        },
        geo_features,
    )
    _write_parquet(
        os.path.join(geo, "data", "test-00000-of-00001.parquet"),
        {
            "images": [[img]],
            "problem": ["<image>Find m \\angle 2."],
            "answer": ["34"],
            "id": [7],
            "choices": [["34", "56", "68", "112"]],
            "ground_truth": ["A"],
        },
        geo_features,
    )
    local["geo3k_train"] = local["geo3k_test"] = geo

    # BytedTsinghua-SIA/DAPO-Math-17k: one verl-shaped parquet whose problems repeat.
    dapo_file = os.path.join(root, "dapo", "data", "dapo-math-17k.parquet")
    problems = [
        "What is $1+1$?",
        "Find the number of primes below 10.",
        "What is $1+1$?",
        "Find the number of primes below 10.",
        "What is $1+1$?",
    ]
    answers = ["2", "4", "2", "4", "3"]  # the last copy disagrees: counted as a conflicting duplicate
    _write_parquet(
        dapo_file,
        {
            "data_source": ["math_dapo"] * 5,
            "prompt": [[{"content": DAPO_INSTRUCTION + p + DAPO_REMINDER, "role": "user"}] for p in problems],
            "ability": ["MATH"] * 5,
            "reward_model": [{"ground_truth": a, "style": "rule-lighteval/MATH_v2"} for a in answers],
            "extra_info": [{"index": f"uuid-{i % 2}"} for i in range(5)],
        },
    )
    local["dapo_math_17k"] = dapo_file

    # hiyouga/math12k: data/train-*.parquet with problem, answer
    _write_parquet(
        os.path.join(root, "math12k", "data", "train-00000-of-00001.parquet"),
        {
            "problem": ["Compute $\\frac{1}{2}+\\frac{1}{4}$.", "Let $x>0$.\nSolve $x^2=4$."],
            "answer": ["\\frac{3}{4}", "2"],
        },
    )
    local["math12k_train"] = os.path.join(root, "math12k")

    # HuggingFaceH4/aime_2024: id, problem, solution, answer, url, year
    _write_parquet(
        os.path.join(root, "aime24", "data", "train-00000-of-00001.parquet"),
        {
            "id": [60],
            "problem": ["Find the remainder when $2^{10}$ is divided by 1000."],
            "solution": ["..."],
            "answer": ["24"],
            "url": ["https://example.invalid"],
            "year": ["2024"],
        },
    )
    local["aime2024"] = os.path.join(root, "aime24")

    # yentinglin/aime_2025: problem, answer - here as a jsonl file
    _write_jsonl(os.path.join(root, "aime25", "train.jsonl"), [{"problem": "Find $7 \\times 9$.", "answer": "63"}])
    local["aime2025"] = os.path.join(root, "aime25")

    # math-ai/amc23: id, question, answer (stored as a float), url
    _write_parquet(
        os.path.join(root, "amc23", "test-00000-of-00001.parquet"),
        {"id": [0], "question": ["How many positive divisors does 12 have?"], "answer": [6.0], "url": ["u"]},
    )
    local["amc2023"] = os.path.join(root, "amc23")

    # HuggingFaceH4/MATH-500: test.jsonl with problem, solution, answer, subject, level, unique_id
    _write_jsonl(
        os.path.join(root, "math500", "test.jsonl"),
        [
            {
                "problem": "Simplify $\\sqrt{18}$.",
                "solution": "...",
                "answer": "3\\sqrt{2}",
                "subject": "Algebra",
                "level": 2,
                "unique_id": "test/algebra/1.json",
            }
        ],
    )
    local["math500"] = os.path.join(root, "math500")

    # math-ai/minervamath: question, answer
    _write_parquet(
        os.path.join(root, "minerva", "test-00000-of-00001.parquet"),
        {"question": ["A star has parallax 0.1 arcsec. Its distance in parsecs?"], "answer": ["10"]},
    )
    local["minerva_math"] = os.path.join(root, "minerva")

    # Hothan/OlympiadBench: one folder per config; final_answer is a list of TeX strings
    olympiad_rows = {
        "id": [1, 2],
        "question": ["Find all real $x$ with $x^2=9$.", "Compute $2+2$."],
        "solution": [["..."], ["..."]],
        "final_answer": [["$3,-3$"], ["$4$"]],
        "context": [None, None],
        "image_1": [None, None],
        "is_multiple_answer": [True, False],
        "unit": [None, None],
        "answer_type": ["Numerical", "Numerical"],
        "subfield": ["Algebra", "Algebra"],
    }
    _write_parquet(os.path.join(root, "olympiad", "OE_TO_maths_en_COMP", "train-00000-of-00001.parquet"), olympiad_rows)
    _write_parquet(
        os.path.join(root, "olympiad", "OE_TO_maths_zh_COMP", "train-00000-of-00001.parquet"),
        {**olympiad_rows, "question": ["中文题一", "中文题二"]},
    )
    local["olympiadbench"] = os.path.join(root, "olympiad")

    # openai/gsm8k, config main: question, answer (solution ending in "#### N")
    _write_parquet(
        os.path.join(root, "gsm8k", "main", "test-00000-of-00001.parquet"),
        {
            "question": [
                "Natalia sold 48 clips in April and half as many in May. How many in total?",
                "A shop sells 1,000 pens a day for 2 days. How many pens?",
            ],
            "answer": ["She sold 48/2 = 24 in May.\n48+24 = 72\n#### 72", "1,000*2=2,000\n#### 2,000"],
        },
    )
    local["gsm8k_test"] = os.path.join(root, "gsm8k")

    # cais/mmlu, config all: question, subject, choices, answer (ClassLabel) - as a save_to_disk folder
    mmlu = datasets.DatasetDict(
        {
            "test": datasets.Dataset.from_dict(
                {
                    "question": ["What is 2+2?"],
                    "subject": ["elementary_mathematics"],
                    "choices": [["3", "5", "4", "22"]],
                    "answer": [2],
                },
                features=datasets.Features(
                    {
                        "question": V("string"),
                        "subject": V("string"),
                        "choices": List(V("string")),
                        "answer": datasets.ClassLabel(names=["A", "B", "C", "D"]),
                    }
                ),
            )
        }
    )
    mmlu.save_to_disk(os.path.join(root, "mmlu_saved"))
    local["mmlu"] = os.path.join(root, "mmlu_saved")

    # AI4Math/MathVista: data/testmini-*.parquet; decoded_image is the image, image only a relative path
    mathvista_features = {
        "pid": V("string"),
        "question": V("string"),
        "image": V("string"),
        "decoded_image": Image(),
        "choices": List(V("string")),
        "unit": V("string"),
        "precision": V("float64"),
        "answer": V("string"),
        "question_type": V("string"),
        "answer_type": V("string"),
        "query": V("string"),
    }
    _write_parquet(
        os.path.join(root, "mathvista", "data", "testmini-00000-of-00001-abc.parquet"),
        {
            "pid": ["1", "2"],
            "question": ["Which bar is tallest?", "What is the length of the red segment?"],
            "image": ["images/1.jpg", "images/2.jpg"],
            "decoded_image": [img, img2],
            "choices": [["blue", "red", "green"], None],
            "unit": [None, "cm"],
            "precision": [None, 1.0],
            "answer": ["red", "2.5"],
            "question_type": ["multi_choice", "free_form"],
            "answer_type": ["text", "float"],
            "query": ["q1", "q2"],
        },
        mathvista_features,
    )
    local["mathvista_testmini"] = os.path.join(root, "mathvista")

    # AI4Math/MathVerse, config testmini: testmini.parquet (+ a text-only file that must not be picked)
    mathverse_features = {
        "sample_index": V("string"),
        "problem_index": V("string"),
        "problem_version": V("string"),
        "question": V("string"),
        "image": Image(),
        "answer": V("string"),
        "question_type": V("string"),
        "query_wo": V("string"),
        "query_cot": V("string"),
        "question_for_eval": V("string"),
    }
    mathverse_rows = {
        "sample_index": ["1", "2"],
        "problem_index": ["1", "1"],
        "problem_version": ["Text Dominant", "Vision Only"],
        "question": ["As shown in the figure, find angle B.\nChoices:\nA:30\nB:45\nC:60\nD:90", ""],
        "image": [img, img2],
        "answer": ["B", "45"],
        "question_type": ["multi-choice", "free-form"],
        "query_wo": ["", ""],
        "query_cot": ["", ""],
        "question_for_eval": ["", ""],
    }
    _write_parquet(os.path.join(root, "mathverse", "testmini.parquet"), mathverse_rows, mathverse_features)
    _write_parquet(os.path.join(root, "mathverse", "testmini_text_only.parquet"), mathverse_rows, mathverse_features)
    local["mathverse_testmini"] = os.path.join(root, "mathverse")

    # MathLLMs/MathVision: data/test-*.parquet; question carries "<image1>", options empty for free-form
    _write_parquet(
        os.path.join(root, "mathvision", "data", "test-00000-of-00001-xyz.parquet"),
        {
            "id": ["1", "2"],
            "question": ["<image1>\nWhich shape is shaded?", "How many dots are there?<image1>"],
            "options": [["circle", "square", "star", "moon", "sun"], []],
            "image": ["images/1.jpg", "images/2.jpg"],
            "decoded_image": [img, img2],
            "answer": ["C", "7"],
            "solution": [None, None],
            "level": [2, 1],
            "subject": ["metric geometry - area", "counting"],
        },
        {
            "id": V("string"),
            "question": V("string"),
            "options": List(V("string")),
            "image": V("string"),
            "decoded_image": Image(),
            "answer": V("string"),
            "solution": V("string"),
            "level": V("int64"),
            "subject": V("string"),
        },
    )
    local["math_vision"] = os.path.join(root, "mathvision")

    # We-Math/We-Math: testmini; option is one string, answer a letter, image_path the image
    _write_parquet(
        os.path.join(root, "wemath", "data", "testmini-00000-of-00001.parquet"),
        {
            "ID": ["3steps_1"],
            "split": ["testmini"],
            "knowledge concept": ["Area of circles"],
            "question": ["The radius is 2. What is the area?"],
            "option": ["A. 2π; B. 4π; C. 8π; D. 16π; E. No correct answer"],
            "answer": ["B"],
            "image_path": [img],
            "key": ["3steps_1"],
            "question number": [1],
            "knowledge concept description": ["..."],
        },
        {
            "ID": V("string"),
            "split": V("string"),
            "knowledge concept": V("string"),
            "question": V("string"),
            "option": V("string"),
            "answer": V("string"),
            "image_path": Image(),
            "key": V("string"),
            "question number": V("int64"),
            "knowledge concept description": V("string"),
        },
    )
    local["wemath_testmini"] = os.path.join(root, "wemath")
    return local


@pytest.fixture(scope="session")
def raw_sources(tmp_path_factory) -> dict[str, str]:
    return build_raw_sources(str(tmp_path_factory.mktemp("raw")))


@pytest.fixture(scope="session")
def prepared(raw_sources, tmp_path_factory) -> dict[str, str]:
    """Every dataset converted through the CLI entry point; NAME -> output parquet path."""
    from data_prep.prepare import main

    out = str(tmp_path_factory.mktemp("prepared"))
    paths = {}
    for name, local_dir in raw_sources.items():
        assert main([name, "--out", out, "--local-dir", local_dir, "--quiet"]) == 0, name
        paths[name] = os.path.join(out, name + ".parquet")
    return paths


@pytest.fixture(scope="session")
def read_rows():
    """Rows of a parquet as python dicts (pyarrow, so images stay {"bytes", "path"} structs)."""
    import pyarrow.parquet as pq

    return lambda path: pq.read_table(path).to_pylist()


@pytest.fixture(scope="session")
def tiny_chat_tokenizer():
    """A byte-level tokenizer with a ChatML template, built offline (no hub download), for verl's length filter."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={char: i for i, char in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{{ message['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
        chat_template=template,
    )


@pytest.fixture(scope="session")
def png():
    return png_bytes
