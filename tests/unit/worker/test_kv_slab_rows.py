"""``SlabRows``: under continuous batching a batch's KV cache loses and gains rows within its
slab, without copying the whole cache, and every position a step reads holds the right numbers.

Each cache entry says which row and column it came from (1000 × row + column, the value +0.5),
so a row that moved can be recognised; the slab's spare places are filled with NaN first, as
the memory of an earlier tenant (or never written) may be.
"""

from __future__ import annotations

import torch

from services.worker.engine.base import GenerationRequest
from services.worker.engine.decoding import ActiveSequence, DecodeBatch, PastKeyValues
from services.worker.engine.kv_in_place import ROOM, TRIM_COLUMNS, SlabRows, slab_of
from shared.messaging.schemas import GenerationParams

LAYERS, HEADS, HEAD_SIZE = 2, 2, 4


def marked(rows: int, width: int, first_mark: int = 0) -> PastKeyValues:
    marks = 1000 * (first_mark + torch.arange(rows)).view(-1, 1, 1, 1) + torch.arange(width).view(
        1, 1, -1, 1
    )
    layer = marks.expand(rows, HEADS, width, HEAD_SIZE).float().contiguous()
    return tuple((layer.clone(), layer.clone() + 0.5) for _ in range(LAYERS))


def sequence(request_id: str, prompt_tokens: int) -> ActiveSequence:
    request = GenerationRequest(request_id, [], GenerationParams(max_new_tokens=4))
    return ActiveSequence(request, prompt_tokens, None)


def slab_batch(slab_rows: SlabRows, lengths: list[int], first_mark: int = 0) -> DecodeBatch:
    """A batch whose cache lives in a slab (as after a step), rows left-padded to the longest;
    the slab's spare rows and tokens hold NaN."""
    width = max(lengths)
    past = marked(len(lengths), width, first_mark)
    held = tuple(tuple(_in_slab(slab_rows, cache, width) for cache in pair) for pair in past)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, width - length :] = 1
    sequences = [sequence(str(first_mark + row), length) for row, length in enumerate(lengths)]
    tokens = (first_mark + torch.arange(len(lengths))).view(-1, 1)
    return DecodeBatch(sequences, held, mask, tokens)  # type: ignore[arg-type]


def _in_slab(slab_rows: SlabRows, cache: torch.Tensor, width: int) -> torch.Tensor:
    with torch.inference_mode():
        rows = slab_rows.with_room(cache, width)  # a new slab: [rows, heads, width + ROOM, …]
        whole = slab_of(rows[:, :, :width])
        assert whole is not None
        whole[cache.shape[0] :] = torch.nan
        whole[:, :, width:] = torch.nan
    return rows[:, :, :width]


def row_marks(cache: torch.Tensor) -> list[int]:
    """The row each of the cache's rows came from, read off its last column."""
    return [int(value) // 1000 for value in cache[:, 0, -1, 0].tolist()]


def test_a_finished_row_gives_its_place_to_the_last_row_without_a_new_slab() -> None:
    slab_rows = SlabRows()
    running = slab_batch(slab_rows, [3, 5, 4, 5])
    made = slab_rows.slabs_made
    storage = running.past[0][0].untyped_storage().data_ptr()
    kept = running.filter([0, 2, 3], slab_rows)  # row 1 finished: row 3 moves into its place
    assert kept is not None
    assert slab_rows.slabs_made == made
    assert kept.past[0][0].untyped_storage().data_ptr() == storage
    assert [s.request.request_id for s in kept.sequences] == ["0", "3", "2"]
    assert kept.last_tokens.flatten().tolist() == [0, 3, 2]
    assert kept.attention_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]
    for key, value in kept.past:
        assert row_marks(key) == [0, 3, 2]
        expected = [[1000.0 * row + column for column in range(5)] for row in (0, 3, 2)]
        assert key[:, 0, :, 0].tolist() == expected
        assert torch.equal(value, key + 0.5)


def test_when_every_row_pads_many_leading_columns_the_cache_moves_to_a_trimmed_slab() -> None:
    slab_rows = SlabRows()
    longest = TRIM_COLUMNS + 6
    running = slab_batch(slab_rows, [longest, 4, 6])
    made = slab_rows.slabs_made
    kept = running.filter([1, 2], slab_rows)  # the longest left: 16 columns only padding
    assert kept is not None
    assert slab_rows.slabs_made == made + 2 * LAYERS
    assert kept.attention_mask.tolist() == [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    for key, value in kept.past:
        assert key.shape == (2, HEADS, 6, HEAD_SIZE)
        assert row_marks(key) == [1, 2]
        assert key[1, 0, :, 0].tolist() == [2000.0 + c for c in range(longest - 6, longest)]
        assert torch.equal(value, key + 0.5)
    # a step's room is there: the trimmed slab has ROOM tokens to spare
    assert kept.past[0][0].stride()[1] == (6 + ROOM) * HEAD_SIZE


def test_a_joining_row_is_written_into_the_free_rows_with_zeros_before_its_tokens() -> None:
    slab_rows = SlabRows()
    running = slab_batch(slab_rows, [5, 3])
    made = slab_rows.slabs_made
    joining = DecodeBatch(
        [sequence("9", 2)],
        marked(1, 2, first_mark=9),
        torch.ones((1, 2), dtype=torch.long),
        torch.tensor([[9]]),
    )
    joined = DecodeBatch.concatenate(running, joining, slab_rows)
    assert slab_rows.slabs_made == made  # the slab had spare rows: nothing new
    assert joined.attention_mask.tolist() == [[1] * 5, [0, 0, 1, 1, 1], [0, 0, 0, 1, 1]]
    for (key, value), (running_key, _) in zip(joined.past, running.past, strict=True):
        assert key.untyped_storage().data_ptr() == running_key.untyped_storage().data_ptr()
        assert row_marks(key) == [0, 1, 9]
        # the spare row held NaN: its padding is zeros now, then the joining tokens
        assert key[2, 0, :, 0].tolist() == [0.0, 0.0, 0.0, 9000.0, 9001.0]
        assert not torch.isnan(key).any() and not torch.isnan(value).any()
        assert torch.equal(value[:2], key[:2] + 0.5)


def test_rows_that_do_not_fit_the_slab_join_in_a_new_one() -> None:
    slab_rows = SlabRows()
    running = slab_batch(slab_rows, [3, 3])
    made = slab_rows.slabs_made
    wider = DecodeBatch(  # longer than the running rows: they would need shifting
        [sequence("7", 4)],
        marked(1, 4, first_mark=7),
        torch.ones((1, 4), dtype=torch.long),
        torch.tensor([[7]]),
    )
    joined = DecodeBatch.concatenate(running, wider, slab_rows)
    assert slab_rows.slabs_made == made + 2 * LAYERS
    assert joined.attention_mask.tolist() == [[0, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]]
    for key, value in joined.past:
        assert key[:, 0, :, 0].tolist() == [
            [0.0, 0.0, 1.0, 2.0],
            [0.0, 1000.0, 1001.0, 1002.0],
            [7000.0, 7001.0, 7002.0, 7003.0],
        ]
        assert not torch.isnan(value).any()


def test_a_cache_outside_any_slab_is_copied_as_by_default() -> None:
    slab_rows = SlabRows()
    past = marked(3, 4)
    mask = torch.ones((3, 4), dtype=torch.long)
    sequences = [sequence(str(row), 4) for row in range(3)]
    running = DecodeBatch(sequences, past, mask, torch.arange(3).view(-1, 1))
    kept = running.filter([2, 0], slab_rows)
    assert kept is not None
    assert [s.request.request_id for s in kept.sequences] == ["2", "0"]
    assert row_marks(kept.past[0][0]) == [2, 0]
    assert past[0][0][0, 0, 0, 0] == 0.0  # the original was not written to
