"""uec_recipe/plain.py's tensors: a tensor that owns exactly its storage goes to torch.save as it is (no copy of the
buffered pictures while a state is written), a view into a larger storage is copied so the file holds its own bytes
only, and every form comes back equal through torch.load(weights_only=True)."""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu

from uec_recipe.plain import from_plain, tensordict_from_plain, tensordict_to_plain, to_plain


def saved_and_loaded(value, path):
    torch.save(value, path)
    return torch.load(path, weights_only=True)


def test_a_tensor_that_owns_its_storage_is_not_copied(tmp_path):
    pixels = torch.rand(1338, 1176)  # one Geometry3K picture at the paper's min_pixels: about 6 MiB
    inputs = {"pixel_values": pixels, "image_grid_thw": torch.tensor([[1, 46, 116]])}
    plain = to_plain({"inputs": {"p": inputs}, "owner": {"k_0": "p"}})
    assert plain["inputs"]["p"]["pixel_values"].data_ptr() == pixels.data_ptr()
    back = from_plain(saved_and_loaded(plain, tmp_path / "state.pt"))
    assert torch.equal(back["inputs"]["p"]["pixel_values"], pixels) and back["owner"] == {"k_0": "p"}


def test_a_view_into_a_larger_storage_is_copied_and_saved_alone(tmp_path):
    big = torch.zeros(1024, 1024)  # 4 MiB
    row = big[3, :16]
    plain = to_plain(row)
    assert plain.data_ptr() != row.data_ptr() and torch.equal(plain, row)
    torch.save(plain, tmp_path / "row.pt")
    assert (tmp_path / "row.pt").stat().st_size < 16_384  # not the 4 MiB around it
    transposed = torch.arange(6.0).reshape(2, 3).t()
    assert torch.equal(saved_and_loaded(to_plain(transposed), tmp_path / "t.pt"), transposed)


def test_numpy_arrays_share_memory_and_come_back_as_arrays(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    plain = to_plain(array)
    assert plain["tensor"].data_ptr() == array.ctypes.data
    back = from_plain(saved_and_loaded(plain, tmp_path / "a.pt"))
    assert isinstance(back, np.ndarray) and np.array_equal(back, array)
    strided = array[:, ::2]
    assert np.array_equal(from_plain(saved_and_loaded(to_plain(strided), tmp_path / "s.pt")), strided)


def test_a_shard_of_rows_keeps_its_picture_tensors_uncopied_and_round_trips(tmp_path):
    pictures = [{"pixel_values": torch.rand(16, 1176), "image_grid_thw": torch.tensor([[1, 4, 4]])} for _ in range(2)]
    rows = TensorDict(
        {
            "responses": torch.nested.as_nested_tensor([torch.ones(3), torch.ones(5)], layout=torch.jagged),
            "advantages": torch.tensor([0.5, -0.5]),
        },
        batch_size=[2],
    )
    tu.assign_non_tensor_stack(rows, "multi_modal_inputs", pictures)
    plain = tensordict_to_plain(rows)
    stored = [row["pixel_values"] for row in plain["fields"]["multi_modal_inputs"]["rows"]]
    assert [t.data_ptr() for t in stored] == [p["pixel_values"].data_ptr() for p in pictures]
    back = tensordict_from_plain(saved_and_loaded(plain, tmp_path / "shard.pt"))
    assert torch.equal(back["advantages"], rows["advantages"])
    assert [r.tolist() for r in back["responses"].unbind(0)] == [[1.0] * 3, [1.0] * 5]
    for given, loaded in zip(pictures, back.get("multi_modal_inputs").tolist()):
        assert torch.equal(loaded["pixel_values"], given["pixel_values"])
