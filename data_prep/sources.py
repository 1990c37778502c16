"""Every dataset the paper trains and evaluates on: where it comes from, which columns we read, how a row becomes a
prompt and a ground truth.

One ``DatasetSpec`` per dataset in ``DATASETS``; a converter is a small function from one source record (a dict of
the source's columns, images still as raw ``{"bytes", "path"}``) to a ``Problem``. Everything the converters share -
the prompt template, image handling, answer normalisation, option lists - lives in the helpers at the top, so a
converter only says what is particular to its source. Column names were checked against each dataset's card on the
hub; the card is cited beside each converter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

# --- the paper's prompt template -----------------------------------------------------------------------------------

# UEC-RL §3 (EasyR1-based): the model reasons inside <think> </think> and puts the final answer in \boxed{}. The
# authors pass this format prompt on the command line (github.com/597358816/EFRame examples/qwen2.5-vl-7b.sh and
# examples/qwen2.5-math-7b.sh, FORMAT_PROMPT) as a two-line shell string whose second line starts with a space. It
# reaches the model as one line: their trainer reads the command line with OmegaConf.from_cli (verl/trainer/main.py),
# which parses each value as YAML, and YAML folds a line break inside a plain scalar into one space; the dataset then
# appends it after one space, prompt + " " + format_prompt.strip() (verl/utils/dataset.py::RLHFDataset.__getitem__).
# The result is this text, byte for byte, after one space (tests/data_prep/test_dp_prepare.py replays that path on
# the authors' exact string). verl's own examples/data_preprocess/geo3k.py uses the same sentence and separator.
THINK_BOXED_SUFFIX = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}."
)
QUESTION_SUFFIX_SEPARATOR = " "  # EasyR1's and verl's join, also when the question itself has line breaks
# Multiple-choice questions (MMLU, the choice questions of the vision benchmarks): our own variant of the template -
# the authors' code has none - asking for the option letter, which is what the "robust" grader of uec_recipe/reward/
# compares. It starts on a new line, so that it does not read as part of the last option.
MULTIPLE_CHOICE_SUFFIX = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags. "
    "The final answer MUST BE the letter of the correct option, put in \\boxed{}."
)
# MathVerse's "Vision Only" version carries the whole question inside the image and an empty text question.
QUESTION_IN_IMAGE = "Answer the question shown in the image."

IMAGE_PLACEHOLDER = "<image>"  # verl's RLHFDataset pairs each occurrence with one image, in order
FREE_FORM, MULTIPLE_CHOICE = "free_form", "multiple_choice"
OPTION_LETTERS = "ABCDEFGHIJ"


class Drop(Exception):
    """A source row we deliberately leave out; the message is the reason counted in the summary line."""


class ConversionError(ValueError):
    """A source row we cannot convert faithfully (missing image, answer not among the options, ...): stop loudly."""


@dataclass
class Problem:
    question: str
    ground_truth: str
    answer_type: str = FREE_FORM
    images: list[bytes] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # CLI name and output file stem
    source_id: str  # hub id: what load_dataset reads and what data_source says
    split: str  # default source split
    convert: Callable[[dict, "SourceContext"], Problem]
    role: str  # "train" or "eval": where the paper uses it
    config: str | None = None
    has_images: bool = False
    deduplicate: bool = False
    published_rows: str = ""  # as stated on the dataset card, for data_prep/README.md


@dataclass
class SourceContext:
    """What a converter may need besides the record: where relative image paths of a local copy resolve from."""

    base_dir: str | None = None


# --- shared helpers --------------------------------------------------------------------------------------------------

_IMAGE_TOKEN = re.compile(r"<image\s*\d*>")


def build_prompt(problem: Problem) -> list[dict]:
    """The single user message: the question with one placeholder per image, a separator, then the suffix.

    A question that already carries verl's "<image>" placeholders, one per image (Geometry3K's ``problem`` does),
    is kept verbatim, as EasyR1 and verl's geo3k.py keep it; other image tokens ("<image1>") are removed and the
    placeholders put in front.
    """
    question = problem.question
    tokens = _IMAGE_TOKEN.findall(question)
    if not (tokens.count(IMAGE_PLACEHOLDER) == len(tokens) == len(problem.images) and question.strip()):
        question = _IMAGE_TOKEN.sub("", question).strip()
        if not question and problem.images:
            question = QUESTION_IN_IMAGE
        question = IMAGE_PLACEHOLDER * len(problem.images) + question
    if problem.answer_type == MULTIPLE_CHOICE:
        return [{"role": "user", "content": question + "\n" + MULTIPLE_CHOICE_SUFFIX}]
    return [{"role": "user", "content": question + QUESTION_SUFFIX_SEPARATOR + THINK_BOXED_SUFFIX}]


def text(record: dict, column: str) -> str:
    """A required text column, stripped; a missing column is a schema mismatch with the source, not a drop."""
    if column not in record:
        raise ConversionError(f"source has no column {column!r}; columns are {sorted(record)}")
    value = record[column]
    return "" if value is None else str(value).strip()


# An unescaped "$": a TeX math delimiter (an escaped "\\$" is a dollar sign and stays).
_MATH_DOLLAR = re.compile(r"(?<!\\)\$")


def answer_text(value) -> str:
    """A gold answer as the string the graders compare: integral floats lose ".0", TeX math delimiters go.

    Only delimiters go, not what is between them: "$3$" -> "3", "$3$ and $5$" -> "3 and 5". An odd number of
    unescaped "$" is not a set of delimiters, and such an answer is kept as it is.
    """
    if value is None:
        raise Drop("no ground truth")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    answer = str(value).strip()
    dollars = len(_MATH_DOLLAR.findall(answer))
    if dollars and dollars % 2 == 0:
        answer = _MATH_DOLLAR.sub("", answer).strip()
    if not answer:
        raise Drop("no ground truth")
    return answer


def question_text(record: dict, column: str, verbatim: bool = False) -> str:
    """A required, non-empty question; ``verbatim`` keeps surrounding white space, for sources whose prompt we
    reproduce byte for byte."""
    question = text(record, column)
    if not question:
        raise Drop("empty question")
    return str(record[column]) if verbatim else question


def image_bytes(value, context: SourceContext) -> bytes:
    """Bytes of one image as a source stores it: an HF Image struct, raw bytes, or a path (relative to --local-dir)."""
    import os

    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)) and value:
        return bytes(value)
    if isinstance(value, str) and value:
        candidates = [value] + ([os.path.join(context.base_dir, value)] if context.base_dir else [])
        for candidate in candidates:
            if os.path.isfile(candidate):
                with open(candidate, "rb") as handle:
                    return handle.read()
        raise ConversionError(f"image file {value!r} not found (looked in {candidates})")
    raise ConversionError(f"missing image (got {type(value).__name__})")


def images_of(record: dict, column: str, context: SourceContext) -> list[bytes]:
    if column not in record:
        raise ConversionError(f"source has no image column {column!r}; columns are {sorted(record)}")
    value = record[column]
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConversionError(f"image column {column!r} is empty")
    return [image_bytes(item, context) for item in values]


def with_options(question: str, options: list[str]) -> str:
    """Question followed by lettered options, one per line, as "A. option"."""
    if len(options) > len(OPTION_LETTERS):
        raise ConversionError(f"{len(options)} options is more than {len(OPTION_LETTERS)} letters")
    lines = [f"{OPTION_LETTERS[i]}. {str(option).strip()}" for i, option in enumerate(options)]
    return question + "\n" + "\n".join(lines)


# We-Math's one-string option list: "A. 2π; B. 4π; C. 8π; D. 16π; E. No correct answer".
_WEMATH_OPTION = re.compile(r"([A-Z])\.\s*(.*?)\s*(?=;\s*[A-Z]\.|$)", re.DOTALL)


def options_extra(options: list[str]) -> dict:
    """``extra_info["options"]``: the option texts in letter order, so that the robust grader can accept an answer
    that gives the gold option's text instead of its letter."""
    return {"options": [str(option).strip() for option in options]}


def wemath_options(option_string: str) -> list[str]:
    """We-Math's options in letter order, or [] when the string is not the regular "A. ...; B. ..." list."""
    found = _WEMATH_OPTION.findall(option_string.strip())
    letters = [letter for letter, _ in found]
    if not found or letters != list(OPTION_LETTERS[: len(found)]):
        return []
    return [option for _, option in found]


def letter_of(answer: str, options: list[str]) -> str:
    """The letter of the option whose text is the answer (MathVista stores the option text, not the letter)."""
    cleaned = [str(option).strip() for option in options]
    if answer in cleaned:
        return OPTION_LETTERS[cleaned.index(answer)]
    raise ConversionError(f"answer {answer!r} is not one of the options {cleaned}")


# --- converters: one per source, each naming its source id and the columns it reads ---------------------------------


def convert_geometry3k(record: dict, context: SourceContext) -> Problem:
    # hiyouga/geometry3k (card): images (sequence of image), problem (with an "<image>" token), answer;
    # splits train 2,101 / validation 300 / test 601. Also id, choices, ground_truth (unused: the paper grades the
    # free-form answer with mathruler, as EasyR1 and verl's geo3k do).
    # The problem text is kept verbatim: EasyR1 (the authors' base) builds the prompt from it unchanged.
    return Problem(
        question=question_text(record, "problem", verbatim=True),
        ground_truth=answer_text(record.get("answer")),
        images=images_of(record, "images", context),
    )


_DAPO_INSTRUCTION = re.compile(r"^Solve the following math problem step by step\..*?\n\n", re.DOTALL)
_DAPO_REMINDER = '\n\nRemember to put your answer on its own line after "Answer:".'


def convert_dapo_math(record: dict, context: SourceContext) -> Problem:
    # BytedTsinghua-SIA/DAPO-Math-17k (card): already verl-shaped - prompt (chat list), reward_model{ground_truth,
    # style}, extra_info{index}, data_source, ability. The user message wraps the problem in DAPO's own "Answer:"
    # instruction, which would contradict the paper's \boxed template, so we cut the problem out of it.
    prompt = record.get("prompt") or []
    if not prompt or not isinstance(prompt[0], dict):
        raise ConversionError("DAPO row without a chat prompt")
    content = str(prompt[0].get("content") or "")
    if _DAPO_REMINDER not in content or not _DAPO_INSTRUCTION.match(content):
        raise Drop("DAPO prompt template not recognised")
    problem = _DAPO_INSTRUCTION.sub("", content, count=1).split(_DAPO_REMINDER)[0].strip()
    if not problem:
        raise Drop("empty question")
    reward_model = record.get("reward_model") or {}
    source_index = (record.get("extra_info") or {}).get("index")
    return Problem(
        question=problem,
        ground_truth=answer_text(reward_model.get("ground_truth")),
        extra={"source_index": None if source_index is None else str(source_index)},
    )


def convert_problem_answer(record: dict, context: SourceContext) -> Problem:
    # Sources with a "problem" and an "answer" column: hiyouga/math12k (train 12,000 / test 500),
    # HuggingFaceH4/aime_2024 (train 30; also id, solution, url, year), yentinglin/aime_2025 (train 30),
    # HuggingFaceH4/MATH-500 (test 500; also solution, subject, level, unique_id).
    extra = {key: str(record[key]) for key in ("subject", "level", "unique_id", "id") if record.get(key) is not None}
    return Problem(
        question=question_text(record, "problem"), ground_truth=answer_text(record.get("answer")), extra=extra
    )


def convert_question_answer(record: dict, context: SourceContext) -> Problem:
    # Sources with a "question" and an "answer" column: math-ai/amc23 (test 40; answers may be stored as floats,
    # e.g. 27.0), math-ai/minervamath (test 272).
    extra = {"id": str(record["id"])} if record.get("id") is not None else {}
    return Problem(
        question=question_text(record, "question"), ground_truth=answer_text(record.get("answer")), extra=extra
    )


def convert_olympiadbench(record: dict, context: SourceContext) -> Problem:
    # Hothan/OlympiadBench, config OE_TO_maths_en_COMP (open-ended, text-only, maths, English competition; 674 rows,
    # split train): question, final_answer (list of strings, usually one, TeX in $...$), unit, is_multiple_answer,
    # id; image_1..image_5 are empty for a text-only config - a row with an image is dropped, not half-converted.
    if any(record.get(f"image_{k}") for k in range(1, 6)):
        raise Drop("has an image (text-only benchmark)")
    answers = record.get("final_answer")
    if isinstance(answers, str):
        answers = [answers]
    if not answers:
        raise Drop("no ground truth")
    gold = ", ".join(answer_text(answer) for answer in answers)
    extra = {"id": str(record.get("id")), "unit": text(record, "unit") if "unit" in record else ""}
    return Problem(question=question_text(record, "question"), ground_truth=gold, extra=extra)


def convert_gsm8k(record: dict, context: SourceContext) -> Problem:
    # openai/gsm8k, config main (test 1,319): question, answer = worked solution ending in "#### <number>". The gold
    # is that number without thousands separators, as verl's gsm8k.py extracts it.
    solution = text(record, "answer")
    if "####" not in solution:
        raise Drop("no '####' answer in solution")
    gold = solution.split("####")[-1].strip().replace(",", "")
    return Problem(question=question_text(record, "question"), ground_truth=answer_text(gold))


def convert_mmlu(record: dict, context: SourceContext) -> Problem:
    # cais/mmlu, config all (test 14,042): question, choices (4 strings), answer (class index 0-3), subject.
    choices = record.get("choices") or []
    answer = record.get("answer")
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise ConversionError(f"MMLU answer {answer!r} is not an index into {len(choices)} choices")
    return Problem(
        question=with_options(question_text(record, "question"), choices),
        ground_truth=OPTION_LETTERS[answer],
        answer_type=MULTIPLE_CHOICE,
        extra={"subject": text(record, "subject"), **options_extra(choices)},
    )


def convert_mathvista(record: dict, context: SourceContext) -> Problem:
    # AI4Math/MathVista (card; testmini 1,000 / test 5,141): question, decoded_image (image; "image" is only a
    # relative path), choices, answer (for multi_choice: the option text), question_type (multi_choice | free_form),
    # answer_type (integer | float | text | list), precision (decimals of a float answer), unit, pid.
    images = images_of(record, "decoded_image", context)
    question = question_text(record, "question")
    pid = str(record.get("pid"))
    if text(record, "question_type") == "multi_choice":
        choices = record.get("choices") or []
        gold = letter_of(answer_text(record.get("answer")), choices)
        extra = {"pid": pid, **options_extra(choices)}
        return Problem(with_options(question, choices), gold, MULTIPLE_CHOICE, images, extra)
    precision = record.get("precision")
    if text(record, "answer_type") == "float" and precision is not None:
        # The gold is rounded to `precision` decimals; without saying so the grader would reject a correct answer
        # given to more decimals.
        question += f" (Give the answer to {int(precision)} decimal place{'s' if int(precision) != 1 else ''}.)"
    return Problem(question, answer_text(record.get("answer")), FREE_FORM, images, {"pid": pid})


def convert_mathverse(record: dict, context: SourceContext) -> Problem:
    # AI4Math/MathVerse, config testmini (3,940 = 788 problems x 5 vision-involving versions): question (options are
    # already written in it for choice questions; empty for "Vision Only"), image, answer (a letter for choice
    # questions), question_type (multi-choice | free-form), problem_version, sample_index.
    answer_type = MULTIPLE_CHOICE if text(record, "question_type") == "multi-choice" else FREE_FORM
    return Problem(
        question=text(record, "question"),
        ground_truth=answer_text(record.get("answer")),
        answer_type=answer_type,
        images=images_of(record, "image", context),
        extra={"sample_index": text(record, "sample_index"), "problem_version": text(record, "problem_version")},
    )


def convert_mathvision(record: dict, context: SourceContext) -> Problem:
    # MathLLMs/MathVision (card; test 3,040 / testmini 304): question (with "<image1>" tokens), options (list; empty
    # for free-form questions), decoded_image (image; "image" is only a relative path), answer (the letter for
    # choice questions), level, subject, id.
    options = record.get("options") or []
    question = question_text(record, "question")
    answer_type = MULTIPLE_CHOICE if options else FREE_FORM
    if options:
        question = with_options(question, options)
    return Problem(
        question=question,
        ground_truth=answer_text(record.get("answer")),
        answer_type=answer_type,
        images=images_of(record, "decoded_image", context),
        extra={
            "id": str(record.get("id")),
            "level": str(record.get("level")),
            "subject": text(record, "subject"),
            **(options_extra(options) if options else {}),
        },
    )


def convert_wemath(record: dict, context: SourceContext) -> Problem:
    # We-Math/We-Math (testmini 1,740): question, option (one string, "A. ...; B. ..."), answer (a letter),
    # image_path (image), ID, key (which step of a composite problem), "question number". All multiple choice.
    options = wemath_options(text(record, "option"))
    return Problem(
        question=question_text(record, "question") + "\nOptions: " + text(record, "option"),
        ground_truth=answer_text(record.get("answer")),
        answer_type=MULTIPLE_CHOICE,
        images=images_of(record, "image_path", context),
        extra={"ID": text(record, "ID"), "key": text(record, "key"), **(options_extra(options) if options else {})},
    )


# --- the table -------------------------------------------------------------------------------------------------------

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        # training
        DatasetSpec(
            "geo3k_train",
            "hiyouga/geometry3k",
            "train",
            convert_geometry3k,
            "train",
            has_images=True,
            published_rows="2,101",
        ),
        DatasetSpec(
            "dapo_math_17k",
            "BytedTsinghua-SIA/DAPO-Math-17k",
            "train",
            convert_dapo_math,
            "train",
            deduplicate=True,
            published_rows="~1.79M (each problem repeated; about 17.4k unique)",
        ),
        DatasetSpec(
            "math12k_train", "hiyouga/math12k", "train", convert_problem_answer, "train", published_rows="12,000"
        ),
        # text evaluation
        DatasetSpec(
            "aime2024", "HuggingFaceH4/aime_2024", "train", convert_problem_answer, "eval", published_rows="30"
        ),
        DatasetSpec("aime2025", "yentinglin/aime_2025", "train", convert_problem_answer, "eval", published_rows="30"),
        DatasetSpec("amc2023", "math-ai/amc23", "test", convert_question_answer, "eval", published_rows="40"),
        DatasetSpec("math500", "HuggingFaceH4/MATH-500", "test", convert_problem_answer, "eval", published_rows="500"),
        DatasetSpec(
            "minerva_math", "math-ai/minervamath", "test", convert_question_answer, "eval", published_rows="272"
        ),
        DatasetSpec(
            "olympiadbench",
            "Hothan/OlympiadBench",
            "train",
            convert_olympiadbench,
            "eval",
            config="OE_TO_maths_en_COMP",
            published_rows="674",
        ),
        DatasetSpec("gsm8k_test", "openai/gsm8k", "test", convert_gsm8k, "eval", config="main", published_rows="1,319"),
        DatasetSpec("mmlu", "cais/mmlu", "test", convert_mmlu, "eval", config="all", published_rows="14,042"),
        # vision evaluation
        DatasetSpec(
            "geo3k_test",
            "hiyouga/geometry3k",
            "test",
            convert_geometry3k,
            "eval",
            has_images=True,
            published_rows="601",
        ),
        DatasetSpec(
            "mathvista_testmini",
            "AI4Math/MathVista",
            "testmini",
            convert_mathvista,
            "eval",
            has_images=True,
            published_rows="1,000",
        ),
        DatasetSpec(
            "mathverse_testmini",
            "AI4Math/MathVerse",
            "testmini",
            convert_mathverse,
            "eval",
            config="testmini",
            has_images=True,
            published_rows="3,940",
        ),
        DatasetSpec(
            "math_vision",
            "MathLLMs/MathVision",
            "test",
            convert_mathvision,
            "eval",
            has_images=True,
            published_rows="3,040",
        ),
        DatasetSpec(
            "wemath_testmini",
            "We-Math/We-Math",
            "testmini",
            convert_wemath,
            "eval",
            has_images=True,
            published_rows="1,740",
        ),
    ]
}
