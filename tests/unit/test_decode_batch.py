"""``DecodeBatch.filter`` and ``concatenate`` index the KV cache on the cache's own device.

Under IO binding on CUDA the cache lives on the GPU while the attention mask and the next tokens
live on the host; ``index_select`` with a host index on a GPU tensor raises there. No GPU here:
the cache goes on torch's ``meta`` device instead (shapes without data), and a torch function
mode fails any call that mixes devices, which CUDA would refuse and the CPU would let pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from services.worker.engine.base import GenerationRequest
from services.worker.engine.decoding import ActiveSequence, DecodeBatch, PastKeyValues
from shared.messaging.schemas import GenerationParams

LAYERS, HEADS, HEAD_SIZE = 2, 2, 4


class MixedDevicesError(AssertionError):
    pass


class OneDevicePerCall(TorchFunctionMode):
    """Raises when one torch call gets tensors from more than one device (as CUDA does)."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        devices = {t.device for t in _tensors((args, kwargs or {}))}
        if len(devices) > 1:
            raise MixedDevicesError(f"{func} got tensors on {sorted(map(str, devices))}")
        return func(*args, **(kwargs or {}))


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def batch(lengths: list[int], cache_device: str) -> DecodeBatch:
    """Rows left-padded to the longest; the cache's entries say which row and column they are
    (100 × row + column), so a selection can be read back on the CPU."""
    width = max(lengths)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, width - length :] = 1
    marks = 100 * torch.arange(len(lengths)).view(-1, 1, 1, 1) + torch.arange(width).view(
        1, 1, -1, 1
    )
    layer = marks.expand(len(lengths), HEADS, width, HEAD_SIZE).float().to(cache_device)
    past: PastKeyValues = tuple((layer.clone(), layer.clone() + 0.5) for _ in range(LAYERS))
    params = GenerationParams(max_new_tokens=4)
    sequences = [
        ActiveSequence(GenerationRequest(str(row), [], params), length, None)
        for row, length in enumerate(lengths)
    ]
    tokens = torch.arange(len(lengths)).view(-1, 1)
    return DecodeBatch(sequences, past, mask, tokens)


def test_a_host_index_on_a_device_cache_is_caught_by_the_check() -> None:
    cache = torch.zeros((2, HEADS, 3, HEAD_SIZE), device="meta")
    with OneDevicePerCall(), pytest.raises(MixedDevicesError):
        cache.index_select(0, torch.tensor([1]))


def test_filter_selects_cache_rows_on_the_cache_device() -> None:
    running = batch([2, 5, 3], cache_device="meta")
    with OneDevicePerCall():
        kept = running.filter([0, 2])
    assert kept is not None
    assert [s.request.request_id for s in kept.sequences] == ["0", "2"]
    assert kept.attention_mask.device.type == "cpu"
    assert kept.last_tokens.device.type == "cpu"
    for key, value in kept.past:
        assert key.device.type == "meta" and value.device.type == "meta"
        # the longest row left: only the three columns the kept rows use remain
        assert key.shape == (2, HEADS, 3, HEAD_SIZE)
    assert kept.attention_mask.tolist() == [[0, 1, 1], [1, 1, 1]]
    assert kept.last_tokens.flatten().tolist() == [0, 2]


def test_a_filtered_batch_joins_another_on_the_cache_device() -> None:
    kept = batch([2, 5, 3], cache_device="meta").filter([2])
    joining = batch([6, 1], cache_device="meta")
    assert kept is not None
    with OneDevicePerCall():
        joined = DecodeBatch.concatenate(kept, joining)
        after = joined.filter([0, 2])
    assert joined.past[0][0].shape == (3, HEADS, 6, HEAD_SIZE)
    assert after is not None and after.past[-1][1].device.type == "meta"
    # the padding columns both kept rows share went with the filter
    assert after.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert after.past[0][0].shape == (2, HEADS, 3, HEAD_SIZE)


def test_filter_keeps_the_right_rows_and_columns_of_the_cache() -> None:
    kept = batch([2, 5, 3], cache_device="cpu").filter([2, 0])
    assert kept is not None
    key, value = kept.past[1]
    # row 2 of the original first, then row 0; columns 2-4 of 5 (the kept rows' longest is 3)
    assert key[:, 0, :, 0].tolist() == [[202.0, 203.0, 204.0], [2.0, 3.0, 4.0]]
    assert torch.equal(value, key + 0.5)
    assert kept.attention_mask.tolist() == [[1, 1, 1], [0, 1, 1]]
