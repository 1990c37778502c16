"""uec_recipe/data_schema.py: every validation error names the file, the column and the row."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uec_recipe.data_schema import SchemaError, validate_rl_parquet


@pytest.fixture
def geo3k_table(prepared):
    return pq.read_table(prepared["geo3k_train"])


@pytest.fixture
def text_table(prepared):
    return pq.read_table(prepared["gsm8k_test"])


def write(tmp_path, table, name="bad.parquet"):
    path = tmp_path / name
    pq.write_table(table, path)
    return str(path)


def replace_column(table, name, values, type=None):
    index = table.schema.get_field_index(name)
    return table.set_column(index, name, pa.array(values, type or table.schema.field(name).type))


def test_prepared_files_validate(prepared):
    assert validate_rl_parquet(prepared["gsm8k_test"], require_images=False) == 2
    assert validate_rl_parquet(prepared["geo3k_train"], require_images=True) == 2
    assert validate_rl_parquet(prepared["geo3k_train"]) == 2


def test_missing_column(tmp_path, text_table):
    path = write(tmp_path, text_table.drop_columns(["reward_model"]))
    with pytest.raises(SchemaError, match=r"bad\.parquet: missing column\(s\) \['reward_model'\]"):
        validate_rl_parquet(path)


def test_missing_images_column_when_required(tmp_path, text_table):
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['images'\]"):
        validate_rl_parquet(write(tmp_path, text_table), require_images=True)


def test_mistyped_column(tmp_path, text_table):
    path = write(tmp_path, replace_column(text_table, "data_source", [1, 2], pa.int64()))
    with pytest.raises(SchemaError, match=r"bad\.parquet: column 'data_source' must be string, found int64"):
        validate_rl_parquet(path)


def test_prompt_as_plain_string_is_mistyped(tmp_path, text_table):
    path = write(tmp_path, replace_column(text_table, "prompt", ["What is 1+1?", "2+2?"], pa.string()))
    with pytest.raises(SchemaError, match="column 'prompt' must be a chat list"):
        validate_rl_parquet(path)


def test_empty_prompt(tmp_path, text_table):
    prompts = text_table.column("prompt").to_pylist()
    prompts[1] = []
    with pytest.raises(SchemaError, match=r"bad\.parquet: column 'prompt': empty prompt \(no messages\) at row\(s\) 1"):
        validate_rl_parquet(write(tmp_path, replace_column(text_table, "prompt", prompts)))


def test_blank_message_content(tmp_path, text_table):
    prompts = text_table.column("prompt").to_pylist()
    prompts[0] = [{"role": "user", "content": "   "}]
    with pytest.raises(SchemaError, match=r"column 'prompt': a message with empty content at row\(s\) 0"):
        validate_rl_parquet(write(tmp_path, replace_column(text_table, "prompt", prompts)))


def test_missing_ground_truth(tmp_path, text_table):
    reward_models = text_table.column("reward_model").to_pylist()
    reward_models[1]["ground_truth"] = None
    with pytest.raises(
        SchemaError, match=r"column 'reward_model.ground_truth': missing or empty ground truth at row\(s\) 1"
    ):
        validate_rl_parquet(write(tmp_path, replace_column(text_table, "reward_model", reward_models)))
    reward_models[1]["ground_truth"] = ""
    with pytest.raises(SchemaError, match=r"ground truth at row\(s\) 1"):
        validate_rl_parquet(write(tmp_path, replace_column(text_table, "reward_model", reward_models), "bad2.parquet"))


def test_unreadable_image(tmp_path, geo3k_table):
    images = geo3k_table.column("images").to_pylist()
    images[1][0]["bytes"] = images[1][0]["bytes"][:40]  # a truncated PNG: header intact, data cut
    path = write(tmp_path, replace_column(geo3k_table, "images", images))
    with pytest.raises(SchemaError, match=r"bad\.parquet: column 'images': unreadable image at row 1"):
        validate_rl_parquet(path)
    assert validate_rl_parquet(path, check_images=False) == 2  # the start-up fast path skips decoding


def test_image_placeholder_count_must_match_images(tmp_path, geo3k_table):
    images = geo3k_table.column("images").to_pylist()
    images[0] = images[0] * 2  # two images, one "<image>" in the prompt: verl would assert mid-run
    with pytest.raises(SchemaError, match=r"placeholders differs from the number of images .* at row\(s\) 0"):
        validate_rl_parquet(write(tmp_path, replace_column(geo3k_table, "images", images)))


def test_row_without_image_in_an_image_dataset(tmp_path, geo3k_table):
    images = geo3k_table.column("images").to_pylist()
    prompts = geo3k_table.column("prompt").to_pylist()
    images[1] = []
    prompts[1][0]["content"] = prompts[1][0]["content"].replace("<image>", "")
    table = replace_column(replace_column(geo3k_table, "images", images), "prompt", prompts)
    with pytest.raises(SchemaError, match=r"column 'images': no image in a dataset that requires images at row\(s\) 1"):
        validate_rl_parquet(write(tmp_path, table), require_images=True)


def test_images_in_a_text_dataset(prepared):
    with pytest.raises(SchemaError, match="an image in a text-only dataset"):
        validate_rl_parquet(prepared["geo3k_train"], require_images=False)


def test_missing_extra_info_index(tmp_path, text_table):
    extra = text_table.column("extra_info").to_pylist()
    extra[0]["index"] = None
    with pytest.raises(SchemaError, match=r"column 'extra_info.index': missing index at row\(s\) 0"):
        validate_rl_parquet(write(tmp_path, replace_column(text_table, "extra_info", extra)))


def test_not_a_parquet_file_and_missing_file(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(SchemaError, match="junk.parquet: not a readable parquet file"):
        validate_rl_parquet(junk)
    with pytest.raises(SchemaError, match="nothing.parquet: file not found"):
        validate_rl_parquet(tmp_path / "nothing.parquet")


def test_schema_error_is_a_value_error_and_module_is_light():
    import subprocess
    import sys

    assert issubclass(SchemaError, ValueError)
    code = (
        "import sys, uec_recipe.data_schema; "
        "print(sorted(m for m in ('verl', 'torch', 'datasets') if m in sys.modules))"
    )
    import os

    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- a bad row anywhere in the file, before training -----------------------------------------------------------------


def repeated(table, times):
    return pa.concat_tables([table] * times)


def test_missing_ground_truth_in_a_later_batch_is_named_by_its_file_row(tmp_path, text_table, monkeypatch):
    # Training would reach this row only late (a later epoch, a later shuffle); the check reads every record batch
    # and numbers rows from the start of the file.
    from uec_recipe import data_schema

    monkeypatch.setattr(data_schema, "BATCH_ROWS", 2)
    table = repeated(text_table, 4)
    reward_models = table.column("reward_model").to_pylist()
    reward_models[7]["ground_truth"] = None
    path = write(tmp_path, replace_column(table, "reward_model", reward_models), "late.parquet")
    with pytest.raises(SchemaError, match=r"late\.parquet: column 'reward_model.ground_truth': .* at row\(s\) 7$"):
        validate_rl_parquet(path)


def test_unreadable_image_in_a_later_batch_is_named_by_its_file_row(tmp_path, geo3k_table, monkeypatch):
    from uec_recipe import data_schema

    monkeypatch.setattr(data_schema, "BATCH_ROWS", 2)
    table = repeated(geo3k_table, 3)
    images = table.column("images").to_pylist()
    images[4][0]["bytes"] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 30  # a PNG signature and nothing decodable
    path = write(tmp_path, replace_column(table, "images", images), "late_image.parquet")
    with pytest.raises(SchemaError, match=r"late_image\.parquet: column 'images': unreadable image at row 4 "):
        validate_rl_parquet(path)


def test_command_line_checks_every_file_and_names_the_bad_one(tmp_path, prepared, text_table, capsys):
    from uec_recipe.data_schema import main

    reward_models = text_table.column("reward_model").to_pylist()
    reward_models[0]["ground_truth"] = " "
    bad = write(tmp_path, replace_column(text_table, "reward_model", reward_models))
    assert main([str(prepared["gsm8k_test"]), bad, "--images", "forbidden"]) == 1
    out, err = capsys.readouterr()
    assert f"ok   {prepared['gsm8k_test']}: 2 rows" in out
    assert f"FAIL {bad}: column 'reward_model.ground_truth': missing or empty ground truth at row(s) 0" in err
    assert main([str(prepared["geo3k_train"]), "--images", "required", "--no-decode"]) == 0
