"""Sampling evaluation: n samples per problem, accuracy-only scoring, unbiased pass@k, resumable.

    python -m uec_recipe.eval.sample --model PATH --data a.parquet [b.parquet ...] --out DIR \
        --n 8 --temperature 0.6 --top-p 0.95 --max-new-tokens 1024 [--grader paper|robust] [--backend hf|vllm] \
        [--mm-processor-kwargs JSON] [--reward-path FILE|pkg://MODULE [--reward-name NAME]] [--batch-size B]

For each parquet (verl's RL schema: `prompt` chat list, `data_source`, `reward_model.ground_truth`, optional
`extra_info`) it writes DIR/<parquet stem>/:
  samples.jsonl  one line per problem: problem_id, data_source, n, correct, accs, preds (+ responses with
                 --save-responses); appended as problems finish, so a rerun resumes where the last one stopped
  run.json       the settings that produced samples.jsonl; a rerun with other settings is refused
  summary.json   avg@n, pass@k and pass^k (k = 1, 2, 4, ... <= n), with n, temperature, top_p, the grader and
                 the model
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from uec_recipe.eval.backends import (
    Generate,
    HFSampler,
    chat_of,
    images_of,
    make_vllm_sampler,
    resolve_model_path,
    vllm_chat_of,
)
from uec_recipe.eval.passk import is_correct, summarize_counts

REQUIRED_COLUMNS = ("prompt", "data_source", "reward_model")
ScoreFn = Callable[..., dict[str, Any]]
GRADERS = ("paper", "robust")  # uec_recipe.reward.GRADERS, repeated so that --help needs no reward import
DEFAULT_REWARD = "uec_recipe.reward:compute_score"
PKG_PREFIX = "pkg://"  # verl.utils.import_utils.PKG_PATH_PREFIX: a reward module named by import path


@dataclass(frozen=True)
class SamplingSettings:
    """What must match between a run and its resumption: change any of these and the samples differ in kind."""

    model: str
    n: int
    temperature: float
    top_p: float
    max_new_tokens: int


@dataclass(frozen=True)
class ScoringSettings:
    """How samples became verdicts and what the model saw besides the prompt; part of every run.json and summary."""

    grader: str = "paper"
    reward_function: str = DEFAULT_REWARD
    mm_processor_kwargs: dict[str, Any] | None = None


# run.json keys that must match for a rerun to resume (the data file may move; its content may not change).
GUARDED_KEYS = (*SamplingSettings.__dataclass_fields__, *ScoringSettings.__dataclass_fields__, "data_fingerprint")


@dataclass
class Benchmark:
    name: str
    path: Path
    rows: list[dict[str, Any]]


# ---------------------------------------------------------------------------------------------------------------
# Inputs. Checked, with the model path, before any model is loaded.


def load_benchmarks(paths: Sequence[str | os.PathLike]) -> list[Benchmark]:
    """Read and check every parquet; raises with the file and column named on the first problem found."""
    import pandas as pd

    benchmarks: list[Benchmark] = []
    seen: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise FileNotFoundError(f"evaluation data not found: {path}")
        name = path.stem
        if name in seen:
            raise ValueError(f"two data files share the benchmark name {name!r}: {seen[name]} and {path}")
        seen[name] = path
        frame = pd.read_parquet(path)
        missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
        if missing:
            raise ValueError(f"{path} lacks column(s) {missing}; verl's RL schema needs {list(REQUIRED_COLUMNS)}")
        if len(frame) == 0:
            raise ValueError(f"{path} has no rows")
        rows = frame.to_dict(orient="records")
        for position, row in enumerate(rows):
            reward_model = row["reward_model"]
            if not isinstance(reward_model, dict) or "ground_truth" not in reward_model:
                raise ValueError(f"{path} row {position}: reward_model must be a dict with a 'ground_truth'")
        benchmarks.append(Benchmark(name=name, path=path, rows=rows))
    return benchmarks


# ---------------------------------------------------------------------------------------------------------------
# Scoring and the per-benchmark loop.


def default_score_fn() -> ScoreFn:
    try:
        from uec_recipe.reward import compute_score
    except ImportError as error:
        raise SystemExit(f"cannot import uec_recipe.reward.compute_score ({error})") from error
    return compute_score


def load_score_fn(path: str | None, name: str = "compute_score") -> ScoreFn:
    """The reward function a training run names with reward.custom_reward_function.path/name, loaded the way verl
    loads it (``verl.utils.import_utils.load_extern_object``), so a module that registers its own graders (see
    examples/own_dataset, uec_lab/demo/reward.py) scores evaluation exactly as it scores training. ``path`` is a
    file or, as in training, ``pkg://package.module``. Without a path: uec_recipe.reward's."""
    if path is None:
        return default_score_fn()
    if path.startswith(PKG_PREFIX):
        module = path[len(PKG_PREFIX) :].replace("/", ".")
        if not module or importlib.util.find_spec(module.split(".")[0]) is None:
            raise ModuleNotFoundError(f"--reward-path {path}: no importable package {module.split('.')[0]!r}")
    elif not os.path.isfile(path):
        raise FileNotFoundError(f"--reward-path {path}: no such file (give a file, or pkg://package.module)")
    from verl.utils.import_utils import load_extern_object

    return load_extern_object(module_path=path, object_name=name)


def describe_graders(data_sources: Sequence[str], scoring: ScoringSettings) -> dict[str, str]:
    """data source -> how it was scored, as uec_recipe.reward describes it (a reward module of one's own that does
    not register with uec_recipe.reward is named instead)."""
    from uec_recipe.reward import describe_grader

    described = {}
    for data_source in sorted(set(data_sources)):
        try:
            described[data_source] = describe_grader(data_source, scoring.grader)
        except ValueError:
            described[data_source] = f"{scoring.reward_function} (grader={scoring.grader})"
    return described


def score_problem(
    row: dict[str, Any], responses: list[str], score_fn: ScoreFn, problem_id: int, grader: str = "paper"
) -> dict[str, Any]:
    data_source = str(row["data_source"])
    ground_truth = row["reward_model"]["ground_truth"]
    extra_info = row.get("extra_info")
    accs, preds = [], []
    for response in responses:
        result = score_fn(data_source, response, ground_truth, extra_info=extra_info, grader=grader)
        accs.append(int(is_correct(result["acc"], f"problem {problem_id} ({data_source})")))
        preds.append(result.get("pred"))
    record = {
        "problem_id": problem_id,
        "data_source": data_source,
        "ground_truth": _plain(ground_truth),
        "n": len(responses),
        "correct": sum(accs),
        "accs": accs,
        "preds": [_plain(p) for p in preds],
    }
    if isinstance(extra_info, dict) and "index" in extra_info:
        record["index"] = _plain(extra_info["index"])
    return record


def _plain(value: Any) -> Any:
    """A JSON-safe version of a value parquet or a scorer handed us (numpy scalars, arrays, objects)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _read_finished(samples_path: Path, n: int) -> dict[int, dict[str, Any]]:
    """Problems already in samples.jsonl. A torn last line (killed mid-write) is dropped; anything else odd is
    an error, because silently mixing runs would corrupt pass@k."""
    if not samples_path.exists():
        return {}
    lines = samples_path.read_text().splitlines()
    finished: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                samples_path.write_text("".join(f"{kept}\n" for kept in lines[:-1]))
                break
            raise ValueError(f"{samples_path} line {number + 1} is not JSON") from None
        if record["n"] != n:
            raise ValueError(f"{samples_path} line {number + 1} has n={record['n']}, this run asks for n={n}")
        finished[int(record["problem_id"])] = record
    return finished


def data_fingerprint(benchmark: Benchmark) -> str:
    """A hash of every problem's prompt and answer: problem ids are row numbers, so resuming on a changed file
    would attach old samples to new problems."""
    digest = hashlib.sha256()
    for row in benchmark.rows:
        problem = [chat_of(row["prompt"]), _plain(row["reward_model"]["ground_truth"])]
        digest.update(json.dumps(problem, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _guard_settings(run_path: Path, run_info: dict[str, Any]) -> None:
    if run_path.exists():
        previous = json.loads(run_path.read_text())
        changed = {
            key: (previous.get(key), value)
            for key, value in run_info.items()
            if key in GUARDED_KEYS and previous.get(key) != value
        }
        if changed:
            detail = ", ".join(f"{key}: existing {old!r} vs requested {new!r}" for key, (old, new) in changed.items())
            raise ValueError(
                f"{run_path.parent} already holds samples from different settings ({detail}). "
                "Use another --out directory, or delete that one to start over."
            )
    run_path.write_text(json.dumps(run_info, indent=2) + "\n")


def evaluate_benchmark(
    benchmark: Benchmark,
    out_dir: str | os.PathLike,
    generate: Generate,
    settings: SamplingSettings,
    score_fn: ScoreFn,
    *,
    scoring: ScoringSettings = ScoringSettings(),
    batch_size: int = 8,
    max_problems: int | None = None,
    save_responses: bool = False,
    backend: str = "hf",
    transform_chat: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Sample, score and append every unfinished problem, then write and return summary.json's content."""
    from tqdm import tqdm

    bench_dir = Path(out_dir) / benchmark.name
    bench_dir.mkdir(parents=True, exist_ok=True)
    samples_path = bench_dir / "samples.jsonl"
    run_info = {
        **asdict(settings),
        **asdict(scoring),
        "data_file": str(benchmark.path),
        "data_fingerprint": data_fingerprint(benchmark),
    }
    _guard_settings(bench_dir / "run.json", run_info)
    finished = _read_finished(samples_path, settings.n)

    limit = len(benchmark.rows) if max_problems is None else min(max_problems, len(benchmark.rows))
    todo = [i for i in range(limit) if i not in finished]
    with samples_path.open("a") as sink, tqdm(total=len(todo), desc=benchmark.name, unit="problem") as progress:
        for start in range(0, len(todo), batch_size):
            ids = todo[start : start + batch_size]
            rows = [benchmark.rows[i] for i in ids]
            chats = [transform_chat(row) if transform_chat else chat_of(row["prompt"]) for row in rows]
            responses = generate(chats, settings.n)
            for problem_id, row, texts in zip(ids, rows, responses, strict=True):
                record = score_problem(row, texts, score_fn, problem_id, scoring.grader)
                if save_responses:
                    record["responses"] = texts
                finished[problem_id] = record
                sink.write(json.dumps(record) + "\n")
            sink.flush()
            os.fsync(sink.fileno())  # a killed run loses at most the batch in flight
            progress.update(len(ids))

    summary = summarize_records(list(finished.values()))
    summary = {
        "benchmark": benchmark.name,
        "data_file": str(benchmark.path),
        "backend": backend,
        **asdict(settings),
        **asdict(scoring),
        "grader_by_data_source": describe_graders([str(row["data_source"]) for row in benchmark.rows], scoring),
        "num_problems_in_file": len(benchmark.rows),
        "complete": len(finished) == len(benchmark.rows),
        **summary,
    }
    (bench_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summarize_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers of summary.json from samples.jsonl records (values are fractions in [0, 1])."""
    stats = summarize_counts((r["n"], r["correct"]) for r in records)
    return {
        "num_problems": stats["num_problems"],
        "data_sources": sorted({r["data_source"] for r in records}),
        "avg@n": stats["avg@n"],
        "pass@k": {str(k): v for k, v in stats["pass@k"].items()},
        "pass^k": {str(k): v for k, v in stats["pass^k"].items()},
        "estimator": "unbiased pass@k (Chen et al. 2021) and pass^k from n samples per problem; avg@n = pass@1",
    }


# ---------------------------------------------------------------------------------------------------------------


def check_scoring(benchmarks: Sequence[Benchmark], score_fn: ScoreFn, grader: str) -> None:
    """Score one made-up response per data source before any model loads: an unknown data source (no grader for
    it) or a reward function without a ``grader`` keyword fails here, not after the first batch of samples."""
    checked = set()
    for benchmark in benchmarks:
        for row in benchmark.rows:
            data_source = str(row["data_source"])
            if data_source in checked:
                continue
            checked.add(data_source)
            extra_info = row.get("extra_info")
            try:
                score_fn(data_source, "", row["reward_model"]["ground_truth"], extra_info=extra_info, grader=grader)
            except TypeError as error:
                raise ValueError(
                    f"{benchmark.path}: the reward function cannot score with grader={grader!r} ({error})"
                ) from error
            except ValueError as error:
                raise ValueError(f"{benchmark.path}: {error}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m uec_recipe.eval.sample", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="HF model dir, verl checkpoint dir, or hub id")
    parser.add_argument("--data", required=True, nargs="+", help="parquet file(s) in verl's RL schema")
    parser.add_argument("--out", required=True, help="output directory (rerun with the same one to resume)")
    parser.add_argument("--n", type=int, default=8, help="samples per problem")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument(
        "--grader",
        choices=GRADERS,
        default="paper",
        help="paper: the authors' scoring (mathruler on the last \\boxed{}), comparable with the paper's tables; "
        "robust: equivalent answers accepted, near misses rejected (uec_recipe/reward/). Default: paper",
    )
    parser.add_argument(
        "--reward-path",
        default=None,
        help="score with this reward module, as reward.custom_reward_function.path does in training: a file or "
        "pkg://package.module (e.g. a module that registers a grader for a dataset of your own, or "
        "pkg://uec_lab.demo.reward for the CPU demo); default uec_recipe.reward",
    )
    parser.add_argument("--reward-name", default="compute_score", help="function name in --reward-path")
    parser.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    parser.add_argument(
        "--mm-processor-kwargs",
        default=None,
        metavar="JSON",
        help="vLLM only: the image processor settings of the training run (its data.mm_processor_kwargs), e.g. "
        '\'{"min_pixels": 262144, "max_pixels": 4194304}\' for run_scripts/gpu/geo3k_*.sh; recorded in summary.json',
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="problems per generate call, each n sequences; also the unit of resume (default: hf 8, vllm 256)",
    )
    parser.add_argument("--max-problems", type=int, default=None, help="only the first K problems of each file")
    parser.add_argument(
        "--greedy-out",
        help="also decode greedily (one sample per problem, temperature 0) into this directory, in the same process",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM only")
    parser.add_argument("--save-responses", action="store_true", help="keep full response texts in the JSONL")
    return parser


def check_args(args: argparse.Namespace) -> None:
    if args.greedy_out is not None and os.path.abspath(args.greedy_out) == os.path.abspath(args.out):
        raise ValueError("--greedy-out must differ from --out: each holds the samples of one setting")
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
    if args.temperature == 0 and args.n != 1:
        raise ValueError("--temperature 0 is greedy decoding: all n samples would be identical; use --n 1")
    if not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.batch_size is None:
        # vLLM schedules everything handed to one call itself, so it wants large calls; HF pads a whole batch.
        args.batch_size = 256 if args.backend == "vllm" else 8
    if args.max_new_tokens < 1 or args.batch_size < 1:
        raise ValueError("--max-new-tokens and --batch-size must be >= 1")
    if args.max_problems is not None and args.max_problems < 1:
        raise ValueError("--max-problems must be >= 1")
    args.mm_processor_kwargs = parse_mm_processor_kwargs(args.mm_processor_kwargs)
    if args.mm_processor_kwargs is not None and args.backend != "vllm":
        raise ValueError("--mm-processor-kwargs applies to --backend vllm only (the hf backend is text-only)")


def parse_mm_processor_kwargs(text: str | None) -> dict[str, Any] | None:
    """--mm-processor-kwargs as a dict; a clear error for anything but a JSON object with sane pixel limits."""
    if text is None:
        return None
    example = '\'{"min_pixels": 262144, "max_pixels": 4194304}\''
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--mm-processor-kwargs must be JSON, e.g. {example}; got {text!r} ({error})") from None
    if not isinstance(value, dict) or not value:
        raise ValueError(f"--mm-processor-kwargs must be a non-empty JSON object, e.g. {example}; got {text!r}")
    for key in ("min_pixels", "max_pixels"):
        if key in value and not (isinstance(value[key], int) and not isinstance(value[key], bool) and value[key] > 0):
            raise ValueError(f"--mm-processor-kwargs: {key} must be a positive integer, got {value[key]!r}")
    if value.get("min_pixels", 0) > value.get("max_pixels", float("inf")):
        raise ValueError(
            f"--mm-processor-kwargs: min_pixels {value['min_pixels']} exceeds max_pixels {value['max_pixels']}"
        )
    return value


def main(argv: Sequence[str] | None = None, generate: Generate | None = None) -> list[dict[str, Any]]:
    """CLI entry. `generate` replaces the model (tests use it to drive the scoring path with known answers)."""
    args = build_parser().parse_args(argv)
    check_args(args)
    # Everything that can fail cheaply fails here, before minutes of model loading.
    benchmarks = load_benchmarks(args.data)
    score_fn = load_score_fn(args.reward_path, args.reward_name)
    scoring = ScoringSettings(
        grader=args.grader,
        reward_function=DEFAULT_REWARD if args.reward_path is None else f"{args.reward_path}:{args.reward_name}",
        mm_processor_kwargs=args.mm_processor_kwargs,
    )
    check_scoring(benchmarks, score_fn, scoring.grader)
    model_path = resolve_model_path(args.model)
    has_images = any(images_of(row) for benchmark in benchmarks for row in benchmark.rows)
    if has_images and args.backend == "hf" and generate is None:
        raise ValueError("rows with images need --backend vllm; the hf backend here is text-only")
    if has_images and args.mm_processor_kwargs is None:
        print(
            "note: rows with images and no --mm-processor-kwargs: vLLM sizes images with the processor's defaults; "
            "pass the training run's data.mm_processor_kwargs so that evaluation sees images as training did",
            file=sys.stderr,
        )
    passes = [(args.out, args.n, args.temperature, args.top_p)]
    if args.greedy_out:
        passes.append((args.greedy_out, 1, 0.0, 1.0))
    summaries = []
    for out, n, temperature, top_p in passes:
        summaries += _sample_all(args, benchmarks, model_path, out, n, temperature, top_p, generate, score_fn, scoring)
    return summaries


def _sample_all(args, benchmarks, model_path, out, n, temperature, top_p, generate, score_fn, scoring):
    """Every benchmark sampled with one setting (n, temperature, top_p) into ``out``."""
    settings = SamplingSettings(model_path, n, temperature, top_p, args.max_new_tokens)
    transform_chat = None
    if generate is None and args.backend == "vllm":
        generate = make_vllm_sampler(
            model_path,
            temperature,
            top_p,
            args.max_new_tokens,
            args.seed,
            args.tensor_parallel_size,
            mm_processor_kwargs=args.mm_processor_kwargs,
        )
        transform_chat = vllm_chat_of
    elif generate is None:
        generate = HFSampler(model_path, temperature, top_p, args.max_new_tokens, args.seed)

    summaries = []
    for benchmark in benchmarks:
        summary = evaluate_benchmark(
            benchmark,
            out,
            generate,
            settings,
            score_fn,
            scoring=scoring,
            batch_size=args.batch_size,
            max_problems=args.max_problems,
            save_responses=args.save_responses,
            backend=args.backend,
            transform_chat=transform_chat,
        )
        summaries.append(summary)
        passes = ", ".join(f"pass@{k}={v:.4f}" for k, v in summary["pass@k"].items())
        print(
            f"{benchmark.name}: {summary['num_problems']}/{summary['num_problems_in_file']} problems, "
            f"n={n} T={temperature} top_p={top_p} grader={args.grader}: "
            f"avg@{n}={summary['avg@n']:.4f}, {passes}",
            file=sys.stderr,
        )
    return summaries


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
