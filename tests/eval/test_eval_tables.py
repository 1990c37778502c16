"""The table builder on fixture summaries carrying the paper's numbers (UEC-RL, arXiv 2604.14646)."""

import json

import pytest
import yaml

from uec_recipe.eval import tables
from uec_recipe.eval.passk import ks_for

SETTINGS = {"n": 8, "temperature": 0.6, "top_p": 0.95, "grader": "paper"}
# Paper, Qwen2.5-VL-7B on Geometry3K: base 38.44, GRPO 50.75, UEC-RL 55.41 -> "37.9% relative improvement".
GEOMETRY = {"base": 38.44, "GRPO": 50.75, "UEC-RL": 55.41}
# Paper, Qwen2.5-Math-7B text table (percent).
TEXT = {
    "GRPO": {"aime24": 25.8, "math": 77.6, "gsm8k": 87.1, "mmlu": 45.0},
    "DAPO": {"aime24": 24.3, "math": 78.3, "gsm8k": 87.6, "mmlu": 48.5},
    "UEC-RL": {"aime24": 28.5, "math": 80.4, "gsm8k": 87.9, "mmlu": 50.2},
}


def write_summary(directory, benchmark, accuracy_percent, settings=SETTINGS):
    """A summary.json as uec_recipe.eval.sample writes it (values as fractions)."""
    acc = accuracy_percent / 100
    ks = ks_for(settings["n"])
    summary = {
        "benchmark": benchmark,
        **settings,
        "model": f"/models/{directory.name}",
        "avg@n": acc,
        # A made-up but monotone pass@k curve, so the pass@k table has something to show.
        "pass@k": {str(k): 1 - (1 - acc) ** k for k in ks},
        "pass^k": {str(k): acc**k for k in ks},
    }
    path = directory / benchmark / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary))
    return path


@pytest.fixture
def runs_file(tmp_path):
    write_summary(tmp_path / "base", "geometry3k", GEOMETRY["base"])
    for method in ("GRPO", "DAPO", "UEC-RL"):
        if method in GEOMETRY:
            write_summary(tmp_path / method, "geometry3k", GEOMETRY[method])
        for benchmark, value in TEXT[method].items():
            write_summary(tmp_path / method, benchmark, value)
    runs = {
        "base": {"label": "Qwen2.5-VL-7B", "summaries": "base"},
        "reference": "GRPO",
        "methods": {m: m for m in ("GRPO", "DAPO", "UEC-RL")},
    }
    path = tmp_path / "runs.yaml"
    path.write_text(yaml.safe_dump(runs))
    return path


def rows_by_label(table):
    return {row[0]: dict(zip(table.header, row, strict=True)) for row in table.rows}


def test_default_layout_follows_data_prep_names():
    specs = tables.default_table_specs(["aime2024", "geo3k_test", "math500", "mathvista_testmini"])
    assert specs == [
        {"title": "Geometry3K", "benchmarks": ["geo3k_test"]},
        {"title": "Vision-language benchmarks", "benchmarks": ["mathvista_testmini"]},
        {"title": "Text benchmarks", "benchmarks": ["aime2024", "math500"]},
    ]


def test_relative_improvement_matches_the_paper():
    value = tables.relative_improvement(55.41, 38.44, 50.75)
    assert round(100 * value, 1) == 37.9
    assert tables.relative_improvement(50.75, 38.44, 50.75) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        tables.relative_improvement(55.0, 40.0, 40.0)


def test_geometry_table_has_base_row_and_relative_improvement(runs_file, tmp_path):
    built = tables.main(["--runs", str(runs_file), "--out", str(tmp_path / "out")])
    geometry = next(t for t in built if t.title == "Geometry3K")
    rows = rows_by_label(geometry)
    assert list(rows) == ["Qwen2.5-VL-7B", "GRPO", "UEC-RL"]  # DAPO has no Geometry3K summary
    assert rows["Qwen2.5-VL-7B"]["geometry3k"] == "38.44"
    assert rows["GRPO"]["geometry3k"] == "50.75"
    assert rows["UEC-RL"]["geometry3k"] == "**55.41**"  # best is bold
    rel = "Rel. impr. over GRPO"
    assert rows["UEC-RL"][rel] == "+37.9%"
    assert rows["GRPO"][rel] == "+0.0%"
    assert rows["Qwen2.5-VL-7B"][rel] == "-"
    # the gains behind the relative improvement: 16.97 / 12.31 - 1 = 37.9%
    assert rows["UEC-RL"]["Gain over base (points)"] == "+16.97" and rows["GRPO"]["Gain over base (points)"] == "+12.31"
    notes = " ".join(geometry.notes)
    assert "(method - base) / (GRPO - base) - 1" in notes
    assert "n=8" in notes and "temperature=0.6" in notes and "top_p=0.95" in notes and "grader=paper" in notes
    assert "the authors' scoring, mathruler" in notes and "comparable with the paper's tables" in notes

    markdown = (tmp_path / "out" / "tables.md").read_text()
    assert "| UEC-RL | **55.41** | +16.97 | +37.9% |" in markdown
    latex = (tmp_path / "out" / "tables.tex").read_text()
    assert r"UEC-RL & \textbf{55.41} & +16.97 & +37.9\% \\" in latex
    assert "top\\_p=0.95" in latex


def test_text_table_columns_and_average(runs_file):
    built = tables.build_tables(yaml.safe_load(runs_file.read_text()), relative_to=runs_file.parent)
    text = next(t for t in built if t.title == "Text benchmarks")
    assert text.header[:6] == ["Method", "aime24", "gsm8k", "math", "mmlu", "Average"]
    rows = rows_by_label(text)
    assert "Qwen2.5-VL-7B" not in rows  # the base model has no text-benchmark summaries
    for method, values in TEXT.items():
        cells = rows[method]
        for benchmark, value in values.items():
            assert float(cells[benchmark].strip("*")) == pytest.approx(value, abs=0.006)
        average = sum(values.values()) / len(values)
        assert float(cells["Average"].strip("*")) == pytest.approx(average, abs=0.006)
    assert rows["UEC-RL"]["Average"].startswith("**")
    assert "Rel. impr. over GRPO" not in text.header  # no base row here, so no relative improvement
    assert any("Average: unweighted mean" in note for note in text.notes)


def test_passk_table_per_benchmark(runs_file):
    built = tables.build_tables(yaml.safe_load(runs_file.read_text()), relative_to=runs_file.parent)
    passk = next(t for t in built if t.title == "pass@k on geometry3k")
    assert passk.header == ["Method", "pass@1", "pass@2", "pass@4", "pass@8"]
    rows = rows_by_label(passk)
    acc = GEOMETRY["UEC-RL"] / 100
    assert float(rows["UEC-RL"]["pass@4"].strip("*")) == pytest.approx(100 * (1 - (1 - acc) ** 4), abs=0.006)
    assert any("Chen et al. 2021" in note for note in passk.notes)
    assert any("n=8" in note for note in passk.notes)


def test_rows_sampled_differently_are_flagged(tmp_path):
    write_summary(tmp_path / "a", "aime24", 20.0)
    write_summary(tmp_path / "b", "aime24", 30.0, settings={**SETTINGS, "n": 4, "temperature": 1.0, "top_p": 1.0})
    runs = {"methods": {"GRPO": "a", "UEC-RL": "b"}}
    built = tables.build_tables(runs, relative_to=tmp_path)
    notes = " ".join(built[0].notes)
    assert "NOT comparable" in notes and "n=4" in notes
    assert built[-1].header == ["Method", "pass@1", "pass@2", "pass@4"]  # only the ks both rows have


def test_bad_runs_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        tables.load_runs(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"GRPO": "x"}))
    with pytest.raises(ValueError, match="methods"):
        tables.load_runs(bad)
    with pytest.raises(FileNotFoundError, match="summary path not found"):
        tables.build_tables({"methods": {"GRPO": "nowhere"}}, relative_to=tmp_path)
    write_summary(tmp_path / "a", "aime24", 20.0)
    with pytest.raises(ValueError, match="no summary has"):
        tables.build_tables(
            {"methods": {"GRPO": "a"}, "tables": [{"title": "T", "benchmarks": ["gsm8k"]}]}, relative_to=tmp_path
        )


def test_rows_scored_by_different_graders_are_flagged_and_both_graders_explained(tmp_path):
    write_summary(tmp_path / "a", "aime24", 20.0)
    write_summary(tmp_path / "b", "aime24", 30.0, settings={**SETTINGS, "grader": "robust"})
    built = tables.build_tables({"methods": {"GRPO": "a", "UEC-RL": "b"}}, relative_to=tmp_path)
    notes = " ".join(built[0].notes)
    assert "aime24: NOT comparable across rows" in notes
    assert "GRPO: n=8, T=0.6, top_p=0.95, grader=paper" in notes
    assert "UEC-RL: n=8, T=0.6, top_p=0.95, grader=robust" in notes
    assert "grader=paper: the authors' scoring" in notes and "grader=robust: equivalent answers accepted" in notes


def test_image_processor_settings_are_part_of_the_protocol(tmp_path):
    pixels = {"min_pixels": 262144, "max_pixels": 4194304}
    write_summary(tmp_path / "a", "geo3k_test", 50.0, settings={**SETTINGS, "mm_processor_kwargs": pixels})
    write_summary(tmp_path / "b", "geo3k_test", 55.0, settings={**SETTINGS, "mm_processor_kwargs": pixels})
    write_summary(tmp_path / "c", "geo3k_test", 52.0)
    same = tables.build_tables({"methods": {"GRPO": "a", "UEC-RL": "b"}}, relative_to=tmp_path)
    assert 'mm_processor_kwargs={"max_pixels": 4194304, "min_pixels": 262144}' in " ".join(same[0].notes)
    mixed = tables.build_tables({"methods": {"GRPO": "a", "UEC-RL": "c"}}, relative_to=tmp_path)
    assert "NOT comparable" in " ".join(mixed[0].notes)


def test_summary_without_a_grader_is_refused(tmp_path):
    path = write_summary(tmp_path / "a", "aime24", 20.0)
    summary = json.loads(path.read_text())
    del summary["grader"]
    path.write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="lacks 'grader'; it was scored before graders were named.*--grader"):
        tables.build_tables({"methods": {"GRPO": "a"}}, relative_to=tmp_path)


def test_seeds_give_mean_and_interval_and_grouped_columns_average_per_seed(tmp_path):
    # two levels; GRPO over three seeds, base one run
    write_summary(tmp_path / "base", "l1", 40.0)
    write_summary(tmp_path / "base", "l2", 10.0)
    for seed, (l1, l2) in enumerate([(50.0, 20.0), (60.0, 20.0), (70.0, 50.0)], 1):
        write_summary(tmp_path / f"grpo{seed}", "l1", l1)
        write_summary(tmp_path / f"grpo{seed}", "l2", l2)
    runs = {
        "base": {"label": "Base", "summaries": "base"},
        "reference": "GRPO",
        "methods": {"GRPO": {"seeds": ["grpo1", "grpo2", "grpo3"]}},
        "tables": [
            {"title": "levels", "benchmarks": ["l1", "l2"]},
            {"title": "bands", "benchmarks": ["l1", "l2"], "columns": {"hard": ["l2"], "both": ["l1", "l2"]}},
            {"title": "pass", "benchmarks": ["l2"], "kind": "passk"},
        ],
    }
    levels, bands, passk = tables.build_tables(runs, relative_to=tmp_path)
    grpo = rows_by_label(levels)["GRPO"]
    # l1: seeds 50, 60, 70 -> 60.00 ± 4.3027 * 10 / sqrt(3) = 24.84
    assert grpo["l1"] == "**60.00 ± 24.84**"
    # Average per seed: 35, 40, 60 -> mean 45.00, sd 13.229, half-width 32.86
    assert grpo["Average"] == "**45.00 ± 32.86**"
    assert rows_by_label(levels)["Base"]["Average"] == "25.00"
    assert any("Seeds per row: Base 1, GRPO 3" in note for note in levels.notes)
    assert rows_by_label(bands)["GRPO"]["hard"] == "**30.00 ± 43.03**"  # 20, 20, 50
    assert rows_by_label(bands)["GRPO"]["both"] == grpo["Average"]
    assert passk.header[0] == "Method" and "±" in rows_by_label(passk)["GRPO"]["pass@1"]


def test_seeds_that_agree_have_no_spread_not_a_zero_interval(tmp_path):
    for seed, (l1, l2) in enumerate([(50.0, 20.0), (50.0, 30.0)], 1):
        write_summary(tmp_path / f"grpo{seed}", "l1", l1)
        write_summary(tmp_path / f"grpo{seed}", "l2", l2)
    runs = {"methods": {"GRPO": {"seeds": ["grpo1", "grpo2"]}}, "tables": [{"title": "t", "benchmarks": ["l1", "l2"]}]}
    (table,) = tables.build_tables(runs, relative_to=tmp_path)
    grpo = rows_by_label(table)["GRPO"]
    assert grpo["l1"] == "**50.00, no spread (2 seeds)**" and "±" in grpo["l2"]
    assert any("no spread" in note for note in table.notes)


def test_seeds_evaluated_differently_are_refused(tmp_path):
    write_summary(tmp_path / "s1", "l1", 50.0)
    write_summary(tmp_path / "s2", "l1", 50.0, settings={**SETTINGS, "n": 4})
    with pytest.raises(ValueError, match="different settings"):
        tables.build_tables({"methods": {"GRPO": {"seeds": ["s1", "s2"]}}}, relative_to=tmp_path)
    write_summary(tmp_path / "s3", "l2", 50.0)
    with pytest.raises(ValueError, match="covers benchmarks"):
        tables.build_tables({"methods": {"GRPO": {"seeds": ["s1", "s3"]}}}, relative_to=tmp_path)
