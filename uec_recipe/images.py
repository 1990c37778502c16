"""Image inputs of buffered rows, held once per picture instead of once per row (vision-language runs).

verl's agent loop stores each trajectory's processed image inputs (``multi_modal_inputs``: ``pixel_values`` and
``image_grid_thw``) with the trajectory in TransferQueue. At the paper's Geometry3K pixel limits that is about
6 MiB per row, and the G samples of a prompt, the G' exploration samples of a difficult one, and the rows of the
same dataset item drawn again in a later epoch (under a fresh uid) all hold identical copies: a batch buffer and a
replay buffer of 2·N0 rows each would keep about 60 GiB of duplicated pixels. While a row waits in a buffer, its
field in TransferQueue is emptied and one copy per distinct picture is kept here, named by a SHA-256 of its
contents; it is put back just before an update reads the row, and emptied again if the row stays buffered. The
held bytes are therefore bounded by the dataset's distinct pictures, whatever the number of draws. Text rows have
no image inputs and are left alone. A copy is checked to be equal to the held one before they are shared, so
training reads exactly what the rollout produced.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence

import torch

FIELD = "multi_modal_inputs"
ID_PREFIX = "sha256:"


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for name in a:
        x, y = a[name], b[name]
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape):
                return False
            if not torch.equal(x, y):
                return False
        elif x != y:
            return False
    return True


def nbytes(inputs: dict) -> int:
    return sum(v.numel() * v.element_size() for v in inputs.values() if isinstance(v, torch.Tensor))


def content_id(inputs: dict) -> str:
    """A name for image inputs from their contents: every field's name, dtype, shape and bytes (values of
    non-tensor fields by ``repr``). Equal inputs get equal names, so a picture drawn again is found again."""
    hasher = hashlib.sha256()
    for name in sorted(inputs):
        value = inputs[name]
        hasher.update(f"{name}\0".encode())
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()  # no copy for a CPU tensor that already is contiguous
            hasher.update(f"{tensor.dtype}{tuple(tensor.shape)}\0".encode())
            hasher.update(tensor.reshape(-1).view(torch.uint8).numpy())
        else:
            hasher.update(f"{value!r}\0".encode())
    return ID_PREFIX + hasher.hexdigest()


class BufferedImages:
    """Who holds which image inputs: ``inputs`` per image id (``content_id``), ``owner`` per buffered row key (for as
    long as the row is in a buffer, whether or not TransferQueue holds its picture at the moment), ``rows`` per image
    id, and ``stripped``, the rows whose picture TransferQueue does not hold now."""

    def __init__(self):
        self.inputs: dict[str, dict] = {}
        self.owner: dict[str, str] = {}
        self.rows: Counter = Counter()
        self.stripped: set[str] = set()

    def __len__(self) -> int:
        return len(self.stripped)

    def bytes_held(self) -> int:
        return sum(nbytes(inputs) for inputs in self.inputs.values())

    def strip(self, tq, partition: str, keys: Sequence[str], prompt_of: Callable[[str], str]) -> int:
        """Move the image inputs of ``keys`` out of TransferQueue (rows without images are skipped); returns the
        bytes the rows no longer hold there. ``prompt_of(key)`` names the prompt a row was sampled from: the rows
        of one prompt in a call are hashed once and compared with the first one's copy."""
        from tensordict import TensorDict
        from verl.utils import tensordict_utils as tu

        keys = [key for key in keys if key not in self.stripped]
        if not keys:
            return 0
        data = tq.kv_batch_get(keys=list(keys), partition_id=partition, select_fields=[FIELD])
        if FIELD not in data.keys():
            return 0
        stripped, freed = [], 0
        of_prompt: dict[str, str] = {}  # prompt -> image id, for this call
        for key, inputs in zip(keys, list(data[FIELD])):
            inputs = getattr(inputs, "data", inputs)
            if not isinstance(inputs, dict) or not inputs:
                continue
            image_id = self._image_id(key, inputs, prompt_of, of_prompt)
            if self.owner.get(key) != image_id:
                self._forget(key)
                self.owner[key] = image_id
                self.rows[image_id] += 1
            self.stripped.add(key)
            stripped.append(key)
            freed += nbytes(inputs)
        if stripped:
            fields = TensorDict({}, batch_size=[len(stripped)])
            tu.assign_non_tensor_stack(fields, FIELD, [{} for _ in stripped])
            tq.kv_batch_put(keys=stripped, partition_id=partition, fields=fields)
        return freed

    def _image_id(self, key: str, inputs: dict, prompt_of: Callable[[str], str], of_prompt: dict) -> str:
        """The id of the held copy equal to ``inputs``, adding ``inputs`` as a new copy if none is."""
        for candidate in (self.owner.get(key), of_prompt.get(prompt_of(key))):
            if candidate is not None and candidate in self.inputs and _same(self.inputs[candidate], inputs):
                return candidate  # a row seen before, or the prompt's other rows: no hash needed
        image_id = content_id(inputs)
        held = self.inputs.get(image_id)
        if held is not None and not _same(held, inputs):
            image_id = f"{image_id}/{key}"  # a hash collision: this row keeps a copy of its own
            held = self.inputs.get(image_id)
        if held is None:
            self.inputs[image_id] = inputs
        of_prompt.setdefault(prompt_of(key), image_id)
        return image_id

    def restore(self, tq, partition: str, keys: Sequence[str]) -> None:
        """Put the image inputs of the stripped ``keys`` back, for an update to read them."""
        from tensordict import TensorDict
        from verl.utils import tensordict_utils as tu

        restored = [key for key in keys if key in self.stripped]
        if not restored:
            return
        fields = TensorDict({}, batch_size=[len(restored)])
        tu.assign_non_tensor_stack(fields, FIELD, [self.inputs[self.owner[key]] for key in restored])
        tq.kv_batch_put(keys=restored, partition_id=partition, fields=fields)
        self.stripped.difference_update(restored)  # the row keeps its picture id if it stays buffered

    def release(self, keys: Sequence[str]) -> None:
        """Forget rows that left every buffer; a picture goes when its last row goes."""
        for key in keys:
            self.stripped.discard(key)
            self._forget(key)

    def _forget(self, key: str) -> None:
        image_id = self.owner.pop(key, None)
        if image_id is None:
            return
        self.rows[image_id] -= 1
        if self.rows[image_id] <= 0:
            del self.rows[image_id]
            self.inputs.pop(image_id, None)

    def state(self) -> dict:
        return {"inputs": self.inputs, "owner": self.owner, "stripped": sorted(self.stripped)}

    def load(self, state: dict) -> None:
        """Restore a saved state. Pictures are renamed by their contents, so a state written when copies were named
        by prompt (one per draw of an item) loads with its equal copies merged."""
        renamed, self.inputs = {}, {}
        for old_id, inputs in state["inputs"].items():
            image_id = content_id(inputs)
            held = self.inputs.get(image_id)
            if held is not None and not _same(held, inputs):
                image_id = f"{image_id}/{old_id}"
            self.inputs.setdefault(image_id, inputs)
            renamed[old_id] = image_id
        self.owner = {key: renamed[image_id] for key, image_id in state["owner"].items()}
        self.rows = Counter(self.owner.values())
        self.stripped = set(state.get("stripped", self.owner))
