"""Decode steps that append to the KV cache in place, on the CPU.

ONNX Runtime's GroupQueryAttention returns past + the new token as a new tensor every step,
so each step reads and writes the whole cache: at batch 16 with 900 cached tokens that copy
made a step 156 ms instead of 94 (``bench/kv_cache.py``). Given one buffer as both past and
present, with room for the new token, it writes the token in place. A graph built by
``chatq model build`` accepts such a buffer (``training/kv_in_place.py``; the session's
metadata says so).

The batch's cache (``DecodeBatch.past``) is then a view of the first rows and tokens of each
buffer (a slab: ``[rows, heads, tokens, head size]`` with rows and tokens to spare). A step
whose cache is such a view with room left runs on the buffer itself. Under continuous batching
rows leave and join between almost every two steps, so rows move within the slab too
(``SlabRows``): a finished row's place is taken by the last row (one row copied, not the whole
cache into new tensors and then into a new buffer, which took a quarter of the engine's time at
batch 16), and a joining row is written into the first free rows. Any other cache (just
prefilled, a batch that outgrew its slab's rows or tokens, or whose leading columns every row
pads) is copied once into a new slab. A prefill, and a prompt continued after its kept prefix,
take the ordinary path: slabs only ever hold the cache of a batch being decoded, never the
prefix cache's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from services.worker.engine.decoding import COPIED_ROWS, PastKeyValues

if TYPE_CHECKING:
    from services.worker.engine.onnx_runtime import OptimumStepModel

Past = PastKeyValues | None

ROOM = 64
"""Tokens a new slab has room for: one copy of the cache per 64 steps, not one per step."""

TRIM_COLUMNS = 16
"""Leading columns that every row pads (the longest rows left) worth a copy into a new slab:
each one costs every later step attention over padding until the slab is replaced anyway."""


def spare_rows(rows: int) -> int:
    """Rows a new slab holds beyond ``rows``, for sequences joining later."""
    return max(4, rows // 2)


IN_PLACE_METADATA = "chatq.kv_in_place"
"""Session metadata ``training/kv_in_place.py`` writes into a graph that takes a buffer."""


def supports_in_place(session: Any) -> bool:
    """Whether the ONNX Runtime session's graph takes a cache buffer with room in place."""
    return bool(session.get_modelmeta().custom_metadata_map.get(IN_PLACE_METADATA) == "1")


class SlabRows:
    """Moves a batch's KV cache rows within its slab (``decoding.CacheRows``) and makes new
    slabs; a cache that is not a slab view (one of CUDA's, say) is copied as by default."""

    def __init__(self) -> None:
        self.slabs_made = 0

    def with_room(self, cache: torch.Tensor, width: int) -> torch.Tensor:
        """The slab rows ``cache`` is the first ``width`` tokens of, when the slab has room for
        one more token; else a new slab holding a copy of it, with ``ROOM`` tokens to spare."""
        slab = slab_of(cache)
        if slab is not None and slab.shape[2] > width:
            return slab[: cache.shape[0]]
        return self._new_slab([cache], width)[: cache.shape[0]]

    @torch.inference_mode()  # the slabs are inference tensors: made during a step
    def keep(
        self, past: PastKeyValues, rows: list[int], first_column: int
    ) -> tuple[PastKeyValues, list[int], int]:
        if any(slab_of(cache) is None for pair in past for cache in pair):
            return COPIED_ROWS.keep(past, rows, first_column)
        width = past[0][0].shape[2]
        if first_column >= TRIM_COLUMNS:
            kept, order, cut = COPIED_ROWS.keep(past, rows, first_column)
            return self._slabbed(kept, width=width - first_column), order, cut
        # each row that leaves from the first len(rows) places takes a kept row from further on
        count = len(rows)
        kept_rows = set(rows)
        holes = [row for row in range(count) if row not in kept_rows]
        movers = [row for row in rows if row >= count]
        order = list(range(count))
        for hole, mover in zip(holes, movers, strict=True):
            order[hole] = mover
        for key, value in past:
            for hole, mover in zip(holes, movers, strict=True):
                key[hole].copy_(key[mover])
                value[hole].copy_(value[mover])
        return tuple((key[:count], value[:count]) for key, value in past), order, 0

    @torch.inference_mode()
    def join(self, first: PastKeyValues, second: PastKeyValues, width: int) -> PastKeyValues:
        """``second``'s rows written into the free rows of ``first``'s slab when they fit (its
        rows, its width and room for a step); else both copied into a new slab."""
        rows, joining = first[0][0].shape[0], second[0][0].shape[0]
        slabs = [(slab_of(key), slab_of(value)) for key, value in first]
        fits = all(
            slab is not None and slab.shape[0] >= rows + joining and slab.shape[2] > width
            for pair in slabs
            for slab in pair
        )
        if not fits or first[0][0].shape[2] != width:
            return self._slabbed(first, second, width=width)
        pad = width - second[0][0].shape[2]
        joined = []
        for (key_slab, value_slab), (key, value) in zip(slabs, second, strict=True):
            assert key_slab is not None and value_slab is not None  # checked by fits
            for slab, new in ((key_slab, key), (value_slab, value)):
                free = slab[rows : rows + joining]
                # the rows' earlier tenants left numbers there; padding must hold zeros (it is
                # masked, but NaN times a zero weight is still NaN)
                free[:, :, :pad].zero_()
                free[:, :, pad:width].copy_(new)
            joined.append(
                (key_slab[: rows + joining, :, :width], value_slab[: rows + joining, :, :width])
            )
        return tuple(joined)

    def _slabbed(self, *pasts: PastKeyValues, width: int) -> PastKeyValues:
        """``pasts``' rows one after another in a new slab per layer's key and value."""
        rows = sum(past[0][0].shape[0] for past in pasts)
        slabbed: list[tuple[torch.Tensor, torch.Tensor]] = []
        for layer in range(len(pasts[0])):
            key = self._new_slab([past[layer][0] for past in pasts], width)
            value = self._new_slab([past[layer][1] for past in pasts], width)
            slabbed.append((key[:rows, :, :width], value[:rows, :, :width]))
        return tuple(slabbed)

    def _new_slab(self, parts: list[torch.Tensor], width: int) -> torch.Tensor:
        """A slab with ``parts``' rows one after another, each left-padded with zeros to
        ``width`` tokens, then spare rows and ``ROOM`` spare tokens. The spare places are not
        zeroed: a step reads only tokens written first (by a part, by ``join``, or by the step
        itself)."""
        rows = sum(part.shape[0] for part in parts)
        _, heads, _, head_dim = parts[0].shape
        slab = torch.empty(
            (rows + spare_rows(rows), heads, width + ROOM, head_dim), dtype=torch.float32
        )
        row = 0
        for part in parts:
            pad = width - part.shape[2]
            slab[row : row + part.shape[0], :, :pad].zero_()
            slab[row : row + part.shape[0], :, pad:width] = part
            row += part.shape[0]
        self.slabs_made += 1
        return slab


def slab_of(cache: torch.Tensor) -> torch.Tensor | None:
    """The whole slab ``cache`` is a view of (its first rows and tokens), or None.

    Recognised by layout, not by ``Tensor._base`` (which inference mode does not record): it
    starts where its storage starts and its row and head strides span more tokens than it
    holds. A tensor that is contiguous, or a slice starting further in, is no slab view, so a
    tensor the engine keeps elsewhere (the prefix cache's) is never written to."""
    if cache.dtype != torch.float32 or cache.device.type != "cpu" or cache.storage_offset():
        return None
    _, heads, width, head_dim = cache.shape
    stride = cache.stride()
    room = stride[1] // head_dim if head_dim else 0
    if room <= width or stride != (heads * room * head_dim, room * head_dim, head_dim, 1):
        return None
    rows = cache.untyped_storage().nbytes() // (heads * room * head_dim * 4)
    if rows < cache.shape[0]:
        return None
    return cache.as_strided((rows, heads, room, head_dim), stride)


class InPlaceStepModel:
    """A step model (``decoding.StepModel``) over an ``OptimumStepModel`` on the CPU: one-token
    steps run on cache slabs in place, everything else the ordinary way."""

    def __init__(self, ordinary: OptimumStepModel) -> None:
        self.ordinary = ordinary
        self.model = ordinary.model
        self.device = ordinary.device
        self.session = self.model.session
        self.layers = sum(1 for item in self.session.get_inputs() if item.name.endswith(".key"))
        self.cache_rows = SlabRows()
        self.in_place_steps = 0

    @property
    def buffers_made(self) -> int:
        """Slabs made (one per layer's key and value each time the cache is copied)."""
        return self.cache_rows.slabs_made

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, past: Past
    ) -> tuple[torch.Tensor, PastKeyValues]:
        """``decoding.StepModel.forward``: a one-token step on the cache in place, anything
        else (a prefill, a prompt after its kept prefix) the ordinary way."""
        if past is None or tokens.shape[1] != 1:
            return self.ordinary.forward(tokens, mask, positions, past)
        width = past[0][0].shape[2]
        buffers = [
            (self.cache_rows.with_room(key, width), self.cache_rows.with_room(value, width))
            for key, value in past
        ]
        binding = self.session.io_binding()
        for name, tensor in (
            ("input_ids", tokens),
            ("attention_mask", mask),
            ("position_ids", positions),
        ):
            binding.bind_cpu_input(name, np.ascontiguousarray(tensor.numpy(), dtype=np.int64))
        for layer, (key, value) in enumerate(buffers):
            for kind, buffer in (("key", key), ("value", value)):
                shape = tuple(buffer.shape)
                pointer = buffer.data_ptr()
                binding.bind_input(
                    f"past_key_values.{layer}.{kind}", "cpu", 0, np.float32, shape, pointer
                )
                binding.bind_output(f"present.{layer}.{kind}", "cpu", 0, np.float32, shape, pointer)
        binding.bind_output("logits")
        self.session.run_with_iobinding(binding)
        logits = torch.from_numpy(binding.get_outputs()[-1].numpy())
        self.in_place_steps += 1
        grown = tuple((key[:, :, : width + 1], value[:, :, : width + 1]) for key, value in buffers)
        return logits[:, -1, :].to(torch.float32), grown
