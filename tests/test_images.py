"""BufferedImages on its own: one copy per distinct picture while rows wait (whatever prompt or draw the rows came
from), identical inputs back for an update, a row that goes back and forth between TransferQueue and a buffer
keeping the picture it shares, and held bytes bounded by the dataset's pictures over repeated draws."""

from __future__ import annotations

import random

import torch
from tensordict import NonTensorStack, TensorDict

from uec_recipe import images as images_module
from uec_recipe.images import FIELD, BufferedImages, content_id, nbytes


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
    one, two = content_id(picture(1.0)), content_id(picture(2.0))
    assert set(images.inputs) == {one, two} and len(images) == 4
    assert all(store.rows[key][FIELD] == {} for key in store.rows)

    images.restore(store, "train", ["e0_0", "p1_0"])  # a replay update reads two rows
    assert torch.equal(store.rows["e0_0"][FIELD]["pixel_values"], picture(1.0)["pixel_values"])
    assert len(images) == 2  # two rows hold their picture in TransferQueue again
    sources.clear()  # a later step: e0 is no longer among this step's exploration prompts
    images.strip(store, "train", ["e0_0", "p1_0"], prompt_of)
    assert set(images.inputs) == {one, two}  # no second copy of p1's picture under e0
    assert images.rows == {one: 3, two: 1}

    images.release(["p1_0", "p1_1", "e0_0"])  # p1's rows leave every buffer: its picture goes with them
    assert set(images.inputs) == {two} and images.bytes_held() == nbytes(picture(2.0))


def test_a_row_with_another_picture_than_its_prompts_keeps_its_own_copy():
    store = Store({"p1_0": picture(1.0), "p1_1": picture(3.0)})
    images = BufferedImages()
    images.strip(store, "train", ["p1_0", "p1_1"], lambda key: key.split("_")[0])
    assert set(images.inputs) == {content_id(picture(1.0)), content_id(picture(3.0))}
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


def test_a_prompt_drawn_again_under_a_fresh_uid_shares_the_copy_held_for_its_picture():
    store = Store({"u1_0": picture(1.0), "u1_1": picture(1.0), "u9_0": picture(1.0), "u9_1": picture(1.0)})
    images = BufferedImages()
    images.strip(store, "train", ["u1_0", "u1_1"], lambda key: key.split("_")[0])
    images.strip(store, "train", ["u9_0", "u9_1"], lambda key: key.split("_")[0])  # the same item, a later epoch
    assert len(images.inputs) == 1 and images.rows == {content_id(picture(1.0)): 4}
    images.release(["u1_0", "u1_1"])
    assert images.bytes_held() == nbytes(picture(1.0))  # still held for the later draw's rows
    images.restore(store, "train", ["u9_1"])
    assert torch.equal(store.rows["u9_1"][FIELD]["pixel_values"], picture(1.0)["pixel_values"])


def test_the_rows_of_one_prompt_are_hashed_once_per_call(monkeypatch):
    calls = []
    monkeypatch.setattr(images_module, "content_id", lambda inputs: calls.append(1) or content_id(inputs))
    store = Store({f"p{p}_{s}": picture(float(p)) for p in range(3) for s in range(4)})
    BufferedImages().strip(store, "train", list(store.rows), lambda key: key.split("_")[0])
    assert len(calls) == 3


def test_held_bytes_stay_bounded_by_the_datasets_pictures_over_repeated_draws():
    """A scripted run: 6 dataset items, 4 prompts drawn per step under fresh uids (items repeat from step 2 on),
    G = 3 rows each and G' = 5 exploration rows of one prompt on some steps; the buffers keep the last 3 steps' rows
    and updates restore and re-strip some of them. Copies named by uid held twice the dataset's pictures on this
    script; named by content they hold at most the dataset's 6."""
    rng = random.Random(0)
    items = {item: picture(float(item)) for item in range(6)}
    per_picture = nbytes(items[0])
    store, images, steps, uid = Store({}), BufferedImages(), [], 0
    most_held, most_uids = 0, 0
    for step in range(12):
        keys, source = [], {}
        for item in rng.sample(sorted(items), 4):
            uid += 1
            for sample in range(3):
                store.rows[f"u{uid}_{sample}"] = {FIELD: {k: v.clone() for k, v in items[item].items()}}
                keys.append(f"u{uid}_{sample}")
            if item % 2 == step % 2 and f"x{step}" not in source:  # this step's difficult prompt
                source[f"x{step}"] = f"u{uid}"
                for sample in range(5):
                    store.rows[f"x{step}_{sample}"] = {FIELD: {k: v.clone() for k, v in items[item].items()}}
                    keys.append(f"x{step}_{sample}")
        images.strip(store, "train", keys, lambda key: source.get(key.split("_")[0], key.split("_")[0]))
        steps.append(keys)
        if len(steps) > 3:
            images.release(steps.pop(0))
        most_held = max(most_held, images.bytes_held())
        most_uids = max(most_uids, len({key.split("_")[0] for keys in steps for key in keys}))
        for key in rng.sample([k for keys in steps for k in keys], 5):  # an update reads some buffered rows
            images.restore(store, "train", [key])
            images.strip(store, "train", [key], lambda k: k.split("_")[0])
    assert most_uids > len(items)  # the buffers held rows of more draws than the dataset has items
    assert most_held <= len(items) * per_picture
    for keys in steps:  # every buffered row gets its own item's picture back
        images.restore(store, "train", keys)
    assert all(store.rows[k][FIELD]["pixel_values"].shape == (8, 6) for keys in steps for k in keys)


def test_a_state_with_copies_named_by_prompt_loads_with_equal_copies_merged():
    legacy = {
        "inputs": {"u1": picture(1.0), "u9": picture(1.0), "u2": picture(2.0)},
        "owner": {"u1_0": "u1", "u9_0": "u9", "u9_1": "u9", "u2_0": "u2"},
        "stripped": ["u1_0", "u9_0", "u9_1", "u2_0"],
    }
    images = BufferedImages()
    images.load(legacy)
    one, two = content_id(picture(1.0)), content_id(picture(2.0))
    assert set(images.inputs) == {one, two} and images.rows == {one: 3, two: 1}
    assert images.owner == {"u1_0": one, "u9_0": one, "u9_1": one, "u2_0": two}
