"""BufferedImages on its own: one picture per prompt while rows wait, identical inputs back for an update, and a
row that goes back and forth between TransferQueue and a buffer keeping the picture it shares."""

from __future__ import annotations

import torch
from tensordict import NonTensorStack, TensorDict

from uec_recipe.images import FIELD, BufferedImages, nbytes


class Store:
    """TransferQueue's key-value calls on one field."""

    def __init__(self, rows: dict[str, dict]):
        self.rows = {key: {FIELD: inputs} for key, inputs in rows.items()}

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        return TensorDict({FIELD: NonTensorStack(*(self.rows[k][FIELD] for k in keys))}, batch_size=[len(keys)])

    def kv_batch_put(self, keys, partition_id, fields=None, tags=None):
        for i, key in enumerate(keys):
            value = fields[FIELD][i]
            self.rows[key][FIELD] = getattr(value, "data", value)


def picture(value: float) -> dict:
    return {"pixel_values": torch.full((8, 6), value), "image_grid_thw": torch.tensor([[1, 2, 4]])}


def test_a_row_restored_and_stripped_again_keeps_sharing_its_prompts_picture():
    store = Store({"p1_0": picture(1.0), "p1_1": picture(1.0), "e0_0": picture(1.0), "p2_0": picture(2.0)})
    images = BufferedImages()
    sources = {"e0": "p1"}  # the exploration prompt e0 re-samples p1: known only during the step that made it

    def prompt_of(key):
        uid = key.split("_")[0]
        return sources.get(uid, uid)

    freed = images.strip(store, "train", ["p1_0", "p1_1", "e0_0", "p2_0"], prompt_of)
    assert freed == 4 * nbytes(picture(1.0))
    assert set(images.inputs) == {"p1", "p2"} and len(images) == 4
    assert all(store.rows[key][FIELD] == {} for key in store.rows)

    images.restore(store, "train", ["e0_0", "p1_0"])  # a replay update reads two rows
    assert torch.equal(store.rows["e0_0"][FIELD]["pixel_values"], picture(1.0)["pixel_values"])
    assert len(images) == 2  # two rows hold their picture in TransferQueue again
    sources.clear()  # a later step: e0 is no longer among this step's exploration prompts
    images.strip(store, "train", ["e0_0", "p1_0"], prompt_of)
    assert set(images.inputs) == {"p1", "p2"}  # no second copy of p1's picture under e0
    assert images.rows == {"p1": 3, "p2": 1}

    images.release(["p1_0", "p1_1", "e0_0"])  # p1's rows leave every buffer: its picture goes with them
    assert set(images.inputs) == {"p2"} and images.bytes_held() == nbytes(picture(2.0))


def test_a_row_with_another_picture_than_its_prompts_keeps_its_own_copy():
    store = Store({"p1_0": picture(1.0), "p1_1": picture(3.0)})
    images = BufferedImages()
    images.strip(store, "train", ["p1_0", "p1_1"], lambda key: key.split("_")[0])
    assert set(images.inputs) == {"p1", "p1_1"}
    images.restore(store, "train", ["p1_1"])
    assert torch.equal(store.rows["p1_1"][FIELD]["pixel_values"], picture(3.0)["pixel_values"])


def test_state_round_trip_remembers_which_rows_transferqueue_does_not_hold():
    store = Store({"p1_0": picture(1.0), "p1_1": picture(1.0)})
    images = BufferedImages()
    images.strip(store, "train", ["p1_0", "p1_1"], lambda key: key.split("_")[0])
    images.restore(store, "train", ["p1_1"])
    resumed = BufferedImages()
    resumed.load(images.state())
    assert resumed.stripped == {"p1_0"} and resumed.owner == images.owner and resumed.rows == images.rows
