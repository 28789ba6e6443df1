"""The bits a (pruned, weight-shared) layer takes, in the format of Deep Compression.

The format and what is counted are described in :mod:`carlib.compression`.
"""

from __future__ import annotations

import heapq

import torch

from .errors import CarlibError

__all__ = ["check_bits", "storage_bits"]


def check_bits(bits: int, name: str = "bits") -> int:
    """``bits`` if it is an integer from 1 to 16, else a :class:`CarlibError` naming ``name``.

    Example:
        >>> check_bits(5)
        5
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise CarlibError(f"{name} must be an integer from 1 to 16, got {bits!r}; "
                          "use e.g. 5 (32 shared values) or 8 (the paper's relative positions)")
    return bits


def _huffman_bits(symbols: torch.Tensor) -> int:
    """Bits of ``symbols`` Huffman-coded (code lengths from the frequencies; ties by symbol)."""
    values, counts = torch.unique(symbols, return_counts=True)
    if len(values) == 1:
        return int(counts[0])
    heap = [(int(n), i, [i]) for i, n in enumerate(counts.tolist())]
    heapq.heapify(heap)
    length = [0] * len(heap)
    tie = len(heap)
    while len(heap) > 1:
        n1, _, s1 = heapq.heappop(heap)
        n2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            length[s] += 1
        heapq.heappush(heap, (n1 + n2, tie, s1 + s2))
        tie += 1
    return int(sum(l * n for l, n in zip(length, counts.tolist())))


def storage_bits(mask: torch.Tensor, bits: int | None, n_bias: int, *, index_bits: int = 8,
                 codes: torch.Tensor | None = None) -> dict:
    """The bits a layer takes in the format described in :mod:`carlib.compression`: dense (a
    code per weight, pruned ones coded as the zero) or sparse (entries with relative positions),
    whichever takes fewer bits.

    Args:
        mask: bool tensor, ``True`` for the stored (surviving) weights.
        bits: bits of one code (values shared, codebook of ``2**bits`` fp32 values), or
            ``None`` for fp32 values (no codebook).
        n_bias: fp32 bias entries stored.
        index_bits: bits of one relative position.
        codes: the code of every weight (``mask``'s shape), for the Huffman column; without it
            the values are taken as coded with ``bits`` each.

    Returns:
        A dict: ``format`` (dense or sparse), ``entries``, ``fillers``, ``value_bits``,
        ``position_bits``, ``codebook_bits``, ``bias_bits``, ``total_bits``, and
        ``huffman_bits`` (the same with both code streams Huffman-coded, tables included).

    Example:
        >>> m = torch.zeros(600, dtype=torch.bool); m[[0, 3, 300]] = True   # gaps 1, 3, 297
        >>> s = storage_bits(m, 5, 0)   # 297 > 256: one filler; 4 entries of 5 + 8 bits
        >>> s["format"], s["fillers"], s["total_bits"] == 4 * 13 + 32 * 32
        ('sparse', 1, True)
        >>> storage_bits(~m, 5, 0)["format"]   # 597 entries of 13 bits > 600 codes of 5
        'dense'

    """
    g = check_bits(index_bits, "index_bits")
    vb = 32 if bits is None else check_bits(bits)
    flat = mask.detach().flatten().bool().cpu()
    n, nnz = flat.numel(), int(flat.sum())
    codebook = 0 if bits is None else 2 ** bits * 32
    codes = None if codes is None else codes.detach().flatten().long().cpu()
    zero = torch.tensor([-1])  # the zero's symbol: pruned weights (dense), fillers (sparse)
    out = {"format": "dense", "entries": n, "fillers": 0, "value_bits": n * vb, "position_bits": 0}
    value_syms = None if codes is None else torch.where(flat, codes, zero)
    huff_positions = 0
    if nnz < n:
        pos = torch.nonzero(flat).flatten()
        gaps = torch.diff(pos, prepend=torch.tensor([-1]))
        fill = torch.div(gaps - 1, 2 ** g, rounding_mode="floor")
        entries = nnz + int(fill.sum())
        if entries * (vb + g) < n * vb:
            out = {"format": "sparse", "entries": entries, "fillers": int(fill.sum()),
                   "value_bits": entries * vb, "position_bits": entries * g}
            top = torch.full((int(fill.sum()),), 2 ** g - 1)
            huff_positions = _huffman_bits(torch.cat([top, gaps - 1 - fill * 2 ** g])) + 2 ** g * 8
            value_syms = None if codes is None else torch.cat([zero.repeat(int(fill.sum())), codes[flat]])
    out.update(codebook_bits=codebook, bias_bits=32 * int(n_bias))
    out["total_bits"] = out["value_bits"] + out["position_bits"] + codebook + out["bias_bits"]
    huff_values = out["value_bits"]
    if bits is not None and value_syms is not None:
        huff_values = _huffman_bits(value_syms) + 2 ** bits * 8
    out["huffman_bits"] = huff_values + huff_positions + codebook + out["bias_bits"]
    return out
