"""carlib.storage: the bits of a layer in Deep Compression's format, on hand-built layouts."""

from __future__ import annotations

import pytest
import torch

from carlib.errors import CarlibError
from carlib.storage import storage_bits


def test_storage_counts_the_bits_of_a_known_layout_including_filler_entries():
    mask = torch.zeros(600, dtype=torch.bool)
    mask[[0, 3, 300, 599]] = True
    s = storage_bits(mask, 5, 2)  # 297 and 299 exceed 256: one filler before each
    assert (s["format"], s["entries"], s["fillers"]) == ("sparse", 6, 2)
    assert (s["value_bits"], s["position_bits"], s["codebook_bits"], s["bias_bits"]) == (30, 48, 1024, 64)
    assert s["total_bits"] == 30 + 48 + 1024 + 64
    s = storage_bits(mask, None, 0, index_bits=2)  # distances up to 4: 74 fillers each
    assert (s["entries"], s["fillers"], s["codebook_bits"]) == (152, 148, 0)
    assert s["total_bits"] == 152 * (32 + 2)
    # a gap of exactly 2**index_bits needs no filler, one more does
    assert storage_bits(torch.tensor([False] * 255 + [True]), 5, 0)["fillers"] == 0
    assert storage_bits(torch.tensor([False] * 256 + [True]), 5, 0)["fillers"] == 1


def test_huffman_column_counts_code_lengths_and_tables():
    dense = storage_bits(torch.ones(8, dtype=torch.bool), 2, 0,
                         codes=torch.tensor([0, 0, 0, 0, 0, 1, 1, 2]))
    # lengths 1, 2, 2 for frequencies 5, 2, 1: 5 + 4 + 2 bits; table 4 symbols x 8; codebook 4 x 32
    assert dense["total_bits"] == 8 * 2 + 128
    assert dense["huffman_bits"] == 11 + 32 + 128
    mask = torch.zeros(600, dtype=torch.bool)
    mask[[0, 3, 300, 599]] = True
    codes = torch.zeros(600, dtype=torch.long)
    codes[[0, 3, 300, 599]] = torch.tensor([1, 1, 2, 1])
    sparse = storage_bits(mask, 5, 0, codes=codes)
    # values: filler, filler, 1, 1, 2, 1 -> frequencies 2, 3, 1 -> lengths 2, 1, 2: 9 bits;
    # distances 1, 3, 256 + 41, 256 + 43 -> symbols 0, 2, 255, 40, 255, 42 -> lengths 3, 3, 2, 2, 2: 14 bits
    assert sparse["huffman_bits"] == 9 + 32 * 8 + 14 + 256 * 8 + 32 * 32


def test_the_cheaper_format_is_counted():
    mask = torch.ones(600, dtype=torch.bool)
    mask[[7, 8, 400]] = False  # 597 entries of 5 + 8 bits cost more than 600 codes of 5
    dense = storage_bits(mask, 5, 3)
    assert (dense["format"], dense["entries"], dense["position_bits"]) == ("dense", 600, 0)
    assert dense["total_bits"] == 600 * 5 + 32 * 32 + 3 * 32
    fp32 = storage_bits(mask, None, 3)  # zeros stored as fp32 zeros: the original's size
    assert fp32["format"] == "dense" and fp32["total_bits"] == (600 + 3) * 32
    codes = torch.where(mask, 1, 0)
    # Huffman: 597 weights of code 1 and 3 zeros -> one bit each; table 32 x 8
    assert storage_bits(mask, 5, 3, codes=codes)["huffman_bits"] == 600 + 256 + 32 * 32 + 3 * 32


@pytest.mark.parametrize("kwargs,words", [({"bits": 0}, "bits must be"), ({"bits": 17}, "bits must be"),
                                          ({"bits": 5, "index_bits": 0}, "index_bits must be")])
def test_bad_bit_counts_are_refused_in_one_line(kwargs, words):
    with pytest.raises(CarlibError) as err:
        storage_bits(torch.ones(4, dtype=torch.bool), n_bias=0, **kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)
