"""TensorDicts as plain data that ``torch.load(weights_only=True)`` accepts, and back.

The UEC state beside a checkpoint holds TransferQueue rows (jagged tensors and per-row Python values) and pending
prompt rows. Pickling them whole would need ``weights_only=False``, which runs whatever code a checkpoint file
names; instead every field becomes tensors, lists, dicts, strings and numbers, tagged with how to rebuild it.

The plain form is made to be saved at once, so a CPU tensor that owns exactly its own storage is passed as it is:
``torch.save`` writes a storage's bytes straight from memory. Copying every tensor first would double, for the
length of a save, the host memory the buffered pictures of a vision-language run take (docs/gpu.md, "Host
memory"). Only a tensor that is a view into a larger storage is copied, so that the file holds its own bytes and not
the whole storage around them; a tensor on another device is copied to the CPU.
"""

from __future__ import annotations

import io
from typing import Any

import torch

_TAG = "__uec__"


def compact(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` on the CPU holding its own bytes only: itself (no copy) when it already does, else a copy."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        return tensor.cpu()  # the copy to the CPU is compact already
    whole = tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
    if whole and tensor.storage_offset() == 0 and tensor.is_contiguous():
        return tensor
    return tensor.clone(memory_format=torch.contiguous_format)


def to_plain(value: Any) -> Any:
    """A value of a non-tensor field as containers, numbers, strings, bytes and tensors only."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, torch.Tensor):
        return compact(value)
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            return {_TAG: "dict_items", "items": [[to_plain(k), to_plain(v)] for k, v in value.items()]}
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [to_plain(item) for item in value]
        return items if isinstance(value, list) else {_TAG: "tuple", "items": items}
    module = type(value).__module__
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.dtype == object:
                return {_TAG: "ndarray_object", "items": [to_plain(v) for v in value.tolist()], "shape": value.shape}
            # from_numpy shares the array's memory; the tensor is saved at once (module docstring)
            return {_TAG: "ndarray", "tensor": compact(torch.from_numpy(np.ascontiguousarray(value)))}
        return value.item()  # a numpy scalar
    if module.startswith("PIL."):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return {_TAG: "png", "bytes": buffer.getvalue()}
    raise TypeError(f"cannot store a {type(value).__name__} in the UEC state")


def from_plain(value: Any) -> Any:
    if isinstance(value, list):
        return [from_plain(item) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(_TAG)
    if kind is None:
        return {key: from_plain(item) for key, item in value.items()}
    if kind == "dict_items":
        return {from_plain(k): from_plain(v) for k, v in value["items"]}
    if kind == "tuple":
        return tuple(from_plain(item) for item in value["items"])
    if kind == "ndarray":
        return value["tensor"].numpy()
    if kind == "ndarray_object":
        import numpy as np

        array = np.empty(len(value["items"]), dtype=object)
        array[:] = [from_plain(item) for item in value["items"]]
        return array.reshape(value["shape"])
    if kind == "png":
        from PIL import Image

        with Image.open(io.BytesIO(value["bytes"])) as image:
            return image.copy()
    raise ValueError(f"unknown tag {kind!r} in the UEC state")


def tensordict_to_plain(td) -> dict:
    """A TensorDict (TransferQueue rows or prompt rows) as {field: {kind, data}} plus its length."""
    from tensordict import NonTensorData, NonTensorStack

    fields = {}
    for key in td.keys():
        value = td.get(key)
        if isinstance(value, torch.Tensor):
            if value.is_nested:
                # each row is a view into the jagged values: compact copies it (token ids and log-probs, small)
                fields[key] = {"kind": "jagged", "rows": [compact(row) for row in value.unbind(0)]}
            else:
                fields[key] = {"kind": "dense", "tensor": compact(value)}
        elif isinstance(value, NonTensorStack):
            fields[key] = {"kind": "stack", "rows": [to_plain(item) for item in value.tolist()]}
        elif isinstance(value, NonTensorData):
            fields[key] = {"kind": "shared", "value": to_plain(value.data)}
        else:
            raise TypeError(f"field {key!r}: cannot store a {type(value).__name__} in the UEC state")
    return {"length": int(td.batch_size[0]), "fields": fields}


def tensordict_from_plain(plain: dict):
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu

    td = TensorDict({}, batch_size=[plain["length"]])
    for key, field in plain["fields"].items():
        kind = field["kind"]
        if kind == "jagged":
            td[key] = torch.nested.as_nested_tensor(field["rows"], layout=torch.jagged)
        elif kind == "dense":
            td[key] = field["tensor"]
        elif kind == "stack":
            tu.assign_non_tensor_stack(td, key, [from_plain(item) for item in field["rows"]])
        elif kind == "shared":
            tu.assign_non_tensor_data(td, key, from_plain(field["value"]))
        else:
            raise ValueError(f"field {key!r}: unknown kind {kind!r} in the UEC state")
    return td
