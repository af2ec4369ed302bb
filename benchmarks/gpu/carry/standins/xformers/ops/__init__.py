"""The two xformers calls ComfyUI-Trellis2 makes, over torch's SDPA (xformers has no build for the
GPU machine's torch 2.11). Blocks of a block-diagonal mask run one SDPA each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812


def _lengths(seqlen: Any) -> list[int]:
    return [int(n) for n in (seqlen.tolist() if torch.is_tensor(seqlen) else seqlen)]


class BlockDiagonalMask:
    def __init__(self, q_seqlen: Sequence[int], kv_seqlen: Sequence[int]) -> None:
        self.q_seqlen, self.kv_seqlen = list(q_seqlen), list(kv_seqlen)

    @classmethod
    def from_seqlens(cls, q_seqlen: Any, kv_seqlen: Any = None) -> BlockDiagonalMask:
        q = _lengths(q_seqlen)
        return cls(q, q if kv_seqlen is None else _lengths(kv_seqlen))


class fmha:  # noqa: N801 (a module in xformers: xformers.ops.fmha.BlockDiagonalMask)
    BlockDiagonalMask = BlockDiagonalMask


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None) -> torch.Tensor:
    # xformers' layout is [batch, tokens, heads, channels]; SDPA's [batch, heads, tokens, channels].
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=scale)
    return out.transpose(1, 2)


def memory_efficient_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               attn_bias: BlockDiagonalMask | None = None, p: float = 0.0,
                               scale: float | None = None, **_: Any) -> torch.Tensor:
    if attn_bias is None:
        return _sdpa(q, k, v, scale)
    blocks = zip(q.split(attn_bias.q_seqlen, dim=1), k.split(attn_bias.kv_seqlen, dim=1),
                 v.split(attn_bias.kv_seqlen, dim=1), strict=True)
    return torch.cat([_sdpa(qi, ki, vi, scale) for qi, ki, vi in blocks], dim=1)
