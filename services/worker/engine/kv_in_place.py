"""Decode steps that append to the KV cache in place, on the CPU.

ONNX Runtime's GroupQueryAttention returns past + the new token as a new tensor every step,
so each step reads and writes the whole cache: at batch 16 with 900 cached tokens that copy
made a step 156 ms instead of 94 (``bench/kv_cache.py``). Given one buffer as both past and
present, with room for the new token, it writes the token in place. A graph built by
``chatq model build`` accepts such a buffer (``training/kv_in_place.py``; the session's
metadata says so).

The batch's cache (``DecodeBatch.past``) is then a view of the first tokens of each buffer.
A step whose cache is such a view with room left runs on the buffer itself; any other cache
(just prefilled, or rebuilt because rows joined or left: ``filter`` and ``concatenate`` make
new tensors) is copied once into a new buffer with ``ROOM`` tokens to spare. A prefill, and a
prompt continued after its kept prefix, take the ordinary path: buffers only ever hold the
cache of a batch being decoded, never the prefix cache's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from services.worker.engine.decoding import PastKeyValues

if TYPE_CHECKING:
    from services.worker.engine.onnx_runtime import OptimumStepModel

Past = PastKeyValues | None

ROOM = 64
"""Tokens a new buffer has room for: one copy of the cache per 64 steps, not one per step."""

IN_PLACE_METADATA = "chatq.kv_in_place"
"""Session metadata ``training/kv_in_place.py`` writes into a graph that takes a buffer."""


def supports_in_place(session: Any) -> bool:
    """Whether the ONNX Runtime session's graph takes a cache buffer with room in place."""
    return bool(session.get_modelmeta().custom_metadata_map.get(IN_PLACE_METADATA) == "1")


class InPlaceStepModel:
    """A step model (``decoding.StepModel``) over an ``OptimumStepModel`` on the CPU: one-token
    steps run on cache buffers in place, everything else the ordinary way."""

    def __init__(self, ordinary: OptimumStepModel) -> None:
        self.ordinary = ordinary
        self.model = ordinary.model
        self.device = ordinary.device
        self.session = self.model.session
        self.layers = sum(1 for item in self.session.get_inputs() if item.name.endswith(".key"))
        self.in_place_steps = 0
        self.buffers_made = 0

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, past: Past
    ) -> tuple[torch.Tensor, PastKeyValues]:
        """``decoding.StepModel.forward``: a one-token step on the cache in place, anything
        else (a prefill, a prompt after its kept prefix) the ordinary way."""
        if past is None or tokens.shape[1] != 1:
            return self.ordinary.forward(tokens, mask, positions, past)
        width = past[0][0].shape[2]
        buffers = [
            (self._with_room(key, width), self._with_room(value, width)) for key, value in past
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

    def _with_room(self, cache: torch.Tensor, width: int) -> torch.Tensor:
        """The buffer ``cache`` is the first ``width`` tokens of, when it has room for one more;
        else a new buffer holding a copy of it, with ``ROOM`` tokens to spare.

        A buffer's view is recognised by its layout, not by ``Tensor._base`` (which inference
        mode does not record): it starts where its storage starts and its head stride spans
        more tokens than it holds. A tensor that is contiguous, or a slice starting further
        in (``DecodeBatch.filter``), has no room, so a tensor the engine keeps elsewhere (the
        prefix cache's) is never written to."""
        batch, heads, _, head_dim = cache.shape
        stride = cache.stride()
        room = stride[1] // head_dim if head_dim else 0
        if (
            cache.storage_offset() == 0
            and room > width
            and stride == (heads * room * head_dim, room * head_dim, head_dim, 1)
            and cache.untyped_storage().nbytes() >= batch * heads * room * head_dim * 4
            and cache.dtype == torch.float32
        ):
            return cache.as_strided((batch, heads, room, head_dim), stride)
        # zeros: a position past the tokens is never attended to, but stays a number
        buffer = torch.zeros((batch, heads, width + ROOM, head_dim), dtype=torch.float32)
        buffer[:, :, :width] = cache
        self.buffers_made += 1
        return buffer
