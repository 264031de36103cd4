"""Position (self-)attention over all voxels of a feature map, without an N x N matrix in memory.

DANet's position attention module (PAM) compares every position of a feature map with every other
one: for N positions it needs an N x N attention matrix (6,144 positions in MPU-Net's bottleneck for a
48 x 256 x 256 window: 150 MB per matrix in float32, and the naive form holds two). This module
computes the same result exactly, in pieces:

* ``impl="chunked"``: the queries are processed in chunks of ``chunk_size`` rows; each chunk is two
  GEMMs and an in-place row softmax of one reused (chunk x N) block, so the extra memory is
  ``chunk_size * N`` floats instead of ``2 * N * N``, and the block stays in cache. Its backward pass
  (an exact custom autograd function) recomputes each block from the saved log-sum-exp instead of
  storing the matrix, so training memory is also linear in N. Best on CPU: at 6,144 tokens it is
  faster than the naive form and needs less than a tenth of its memory
  (``benchmarks/bench_attention.py``).
* ``impl="sdpa"``: :func:`torch.nn.functional.scaled_dot_product_attention`, whose fused kernels
  (flash / memory-efficient) never materialise the matrix. DANet's value is wider than its query and
  key (C versus C/8); such shapes push SDPA onto its math kernel, which *does* materialise it. When
  the value width is a multiple of the query width, the value is therefore viewed as
  ``value_dim / query_dim`` heads of the query width that share the same query and key, which is
  the same computation and lets the fused kernels run. Best on CUDA.
* ``impl="auto"`` (default): ``"sdpa"`` on CUDA, ``"chunked"`` elsewhere.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import conv_type

__all__ = ["ATTENTION_IMPLS", "PositionAttention", "default_chunk_size", "position_attention"]

#: Implementations `position_attention` (and MPUNet's ``attention_impl``) accept.
ATTENTION_IMPLS = ("auto", "chunked", "sdpa")
#: Memory per intra-op thread for the chunked implementation's (chunk x N) score block, in bytes.
CHUNK_BUDGET_BYTES = 8 * 2**20


def default_chunk_size(num_tokens: int, budget_bytes: Optional[int] = None) -> int:
    """Number of query rows per chunk so that one float32 (chunk x N) score block fits a budget.

    Args:
        num_tokens: number of key positions N.
        budget_bytes: memory allowed for the block; default ``CHUNK_BUDGET_BYTES`` per intra-op
            thread, up to 4 threads (more rows per GEMM keep several threads busy with fewer
            synchronisations; measured in ``benchmarks/bench_attention.py``).

    Returns:
        A power of two between 64 and 4096 (never more than needed to cover ``num_tokens``).
    """
    if budget_bytes is None:
        budget_bytes = CHUNK_BUDGET_BYTES * min(max(torch.get_num_threads(), 1), 4)
    rows = max(64, budget_bytes // (4 * max(num_tokens, 1)))
    chunk = 1 << (int(rows).bit_length() - 1)  # round down to a power of two
    return int(min(chunk, 4096, max(num_tokens, 1)))


def _softmax_rows_(scores: torch.Tensor) -> torch.Tensor:
    """Row softmax of a 2D block, in place on CPU (one vectorised kernel, no second block)."""
    if scores.device.type == "cpu":
        try:
            return torch.softmax(scores, 1, out=scores)
        except (TypeError, RuntimeError):  # older torch without softmax(out=)
            pass
    row_max = scores.amax(dim=1, keepdim=True)
    scores.sub_(row_max).exp_()
    return scores.div_(scores.sum(dim=1, keepdim=True))


class _ChunkedAttention(torch.autograd.Function):
    """softmax(scale * Q K^T) V over query chunks; exact forward and recomputing backward."""

    @staticmethod
    def forward(ctx, query, key, value, scale, chunk):  # noqa: D102 - documented on the class
        groups, n_q, _ = query.shape
        need_grad = any(ctx.needs_input_grad[:3])
        value = value.contiguous()  # (N, Dv) row-major: the faster GEMM operand layout
        out = value.new_empty(groups, n_q, value.shape[-1])
        lse = query.new_empty(groups, n_q) if need_grad else None
        buffer = query.new_empty(min(chunk, n_q), key.shape[1])  # one (chunk x N) block, reused
        for g in range(groups):
            for start in range(0, n_q, chunk):
                stop = min(start + chunk, n_q)
                scores = torch.mm(query[g, start:stop], key[g].t(), out=buffer[: stop - start])
                if scale != 1.0:
                    scores.mul_(scale)
                if lse is not None:  # kept for the backward pass, which recomputes the block
                    torch.logsumexp(scores, dim=1, out=lse[g, start:stop])
                torch.mm(_softmax_rows_(scores), value[g], out=out[g, start:stop])
        if need_grad:
            ctx.save_for_backward(query, key, value, out, lse)
        ctx.scale, ctx.chunk = scale, chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: D102 - documented on the class
        query, key, value, out, lse = ctx.saved_tensors
        scale, chunk = ctx.scale, ctx.chunk
        grad_out = grad_out.contiguous()
        grad_q = torch.zeros_like(query) if ctx.needs_input_grad[0] else None
        grad_k = torch.zeros_like(key) if ctx.needs_input_grad[1] else None
        grad_v = torch.zeros_like(value) if ctx.needs_input_grad[2] else None
        # delta_i = sum_j P_ij dP_ij = <dO_i, O_i>  (softmax backward without the full matrix)
        delta = (grad_out * out).sum(dim=-1)
        rows = min(chunk, query.shape[1])
        buffer, d_buffer = query.new_empty(rows, key.shape[1]), query.new_empty(rows, key.shape[1])
        for g in range(query.shape[0]):
            for start in range(0, query.shape[1], chunk):
                stop = min(start + chunk, query.shape[1])
                q_c, do_c = query[g, start:stop], grad_out[g, start:stop]
                probs = torch.mm(q_c, key[g].t(), out=buffer[: stop - start])
                if scale != 1.0:
                    probs.mul_(scale)
                probs.sub_(lse[g, start:stop, None]).exp_()
                if grad_v is not None:
                    grad_v[g].addmm_(probs.t(), do_c)
                if grad_q is None and grad_k is None:
                    continue
                d_scores = torch.mm(do_c, value[g].t(), out=d_buffer[: stop - start])
                d_scores.sub_(delta[g, start:stop, None]).mul_(probs)
                if scale != 1.0:
                    d_scores.mul_(scale)
                if grad_q is not None:
                    torch.mm(d_scores, key[g], out=grad_q[g, start:stop])
                if grad_k is not None:
                    grad_k[g].addmm_(d_scores.t(), q_c)
        return grad_q, grad_k, grad_v, None, None


def _unit_stride(t: torch.Tensor) -> torch.Tensor:
    """The fused SDPA kernels need stride 1 in the last dimension (channel-major inputs lack it)."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    """SDPA with the value split into heads of the query width when that makes the shapes equal."""
    q_dim, v_dim = query.shape[-1], value.shape[-1]
    if v_dim == q_dim or v_dim % q_dim != 0:
        query, key, value = (_unit_stride(t) for t in (query, key, value))
        return F.scaled_dot_product_attention(query, key, value, scale=scale)
    batch, heads, n_tok, _ = query.shape
    ratio = v_dim // q_dim
    # (B, H, N, r*d) -> (B, H*r, N, d); query and key repeated for each of the r value heads.
    v_heads = value.reshape(batch, heads, n_tok, ratio, q_dim).transpose(2, 3)
    v_heads = _unit_stride(v_heads.reshape(batch, heads * ratio, n_tok, q_dim))
    q_heads = query.unsqueeze(2).expand(-1, -1, ratio, -1, -1).reshape(batch, heads * ratio, n_tok, q_dim)
    k_heads = key.unsqueeze(2).expand(-1, -1, ratio, -1, -1).reshape(batch, heads * ratio, -1, q_dim)
    out = F.scaled_dot_product_attention(_unit_stride(q_heads), _unit_stride(k_heads), v_heads, scale=scale)
    return out.reshape(batch, heads, ratio, n_tok, q_dim).transpose(2, 3).reshape(batch, heads, n_tok, v_dim)


def position_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float = 1.0,
    impl: str = "auto",
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """Exact ``softmax(scale * query @ key^T) @ value`` without materialising the N x N matrix.

    Args:
        query: (B, H, N, Dqk) queries (H heads, N positions).
        key: (B, H, N, Dqk) keys.
        value: (B, H, N, Dv) values; Dv may differ from Dqk (DANet: Dv = 8 Dqk).
        scale: factor on the scores. DANet does not scale them: 1.0 (the default).
        impl: "auto", "chunked" or "sdpa" (see the module docstring).
        chunk_size: query rows per chunk for "chunked"; None: :func:`default_chunk_size`.

    Returns:
        (B, H, N, Dv) attention output in the dtype of ``value``.

    Example:
        >>> q = k = torch.randn(1, 1, 100, 4); v = torch.randn(1, 1, 100, 32)
        >>> position_attention(q, k, v).shape
        torch.Size([1, 1, 100, 32])
    """
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    if query.dim() != 4 or key.shape != query.shape or value.shape[:3] != query.shape[:3]:
        raise ValueError(
            "expected query and key of shape (B, H, N, Dqk) and value (B, H, N, Dv), got "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    if impl == "auto":
        impl = "sdpa" if query.device.type == "cuda" else "chunked"
    if impl == "sdpa":
        return _sdpa(query, key, value, float(scale))
    batch, heads, n_tok, q_dim = query.shape
    chunk = int(chunk_size) if chunk_size else default_chunk_size(n_tok)
    if chunk < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    dtype = value.dtype
    # Exponentials and row sums in float32 even for half-precision inputs; no autocast in the GEMMs.
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    # Query and key enter the GEMMs as they are (transposed operands, no copy); the value is made
    # row-major once inside (the faster layout for the big GEMM).
    no_autocast = query.device.type in ("cpu", "cuda")  # other devices (e.g. meta) have no autocast
    with torch.autocast(query.device.type, enabled=False) if no_autocast else contextlib.nullcontext():
        out = _ChunkedAttention.apply(
            query.reshape(batch * heads, n_tok, q_dim).to(compute),
            key.reshape(batch * heads, n_tok, q_dim).to(compute),
            value.reshape(batch * heads, n_tok, -1).to(compute),
            float(scale),
            chunk,
        )
    return out.reshape(batch, heads, n_tok, -1).to(dtype)


class PositionAttention(nn.Module):
    """DANet position attention on a 2D/3D feature map: ``x + gamma * attention(x)``.

    Query and key are 1x1 convolutions to ``qk_channels``, the value a 1x1 convolution to
    ``channels``; the softmax runs over all positions; ``gamma`` is a learnable scalar initialised to
    0, so the block starts as the identity. With ``heads > 1`` the query/key/value channels are split
    into heads (Transformer multi-head attention) and ``out_proj=True`` adds the 1x1 output
    projection that mixes the heads.

    Args:
        spatial_dims: 2 or 3.
        channels: input (= value = output) channels C.
        qk_channels: query/key channels; default ``channels // 8`` (DANet).
        heads: number of heads; must divide ``qk_channels`` and ``channels``.
        scale: score scale; ``None`` gives ``1/sqrt(qk_channels / heads)`` (Transformer), DANet
            uses 1.0.
        out_proj: add a 1x1 convolution after the heads.
        impl: attention implementation, see :func:`position_attention`.

    Example:
        >>> pam = PositionAttention(spatial_dims=3, channels=64)
        >>> pam(torch.randn(1, 64, 2, 4, 4)).shape
        torch.Size([1, 64, 2, 4, 4])
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        qk_channels: Optional[int] = None,
        heads: int = 1,
        scale: Optional[float] = 1.0,
        out_proj: bool = False,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        qk_channels = channels // 8 if qk_channels is None else qk_channels
        if qk_channels < 1 or heads < 1 or qk_channels % heads or channels % heads:
            raise ValueError(
                f"heads={heads} must divide qk_channels={qk_channels} and channels={channels} "
                "(and both must be >= 1); pick heads among their common divisors"
            )
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
        conv = conv_type(spatial_dims)
        self.heads, self.impl = heads, impl
        self.scale = float(scale) if scale is not None else (qk_channels // heads) ** -0.5
        self.query = conv(channels, qk_channels, kernel_size=1)
        self.key = conv(channels, qk_channels, kernel_size=1)
        self.value = conv(channels, channels, kernel_size=1)
        self.out_proj = conv(channels, channels, kernel_size=1) if out_proj else None
        self.gamma = nn.Parameter(torch.zeros(1))

    def _tokens(self, t: torch.Tensor) -> torch.Tensor:
        """(B, C, *spatial) -> (B, heads, N, C/heads)."""
        b, c = t.shape[:2]
        return t.reshape(b, self.heads, c // self.heads, -1).transpose(2, 3)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The attention output alone (before ``gamma`` and the residual), shaped like ``x``."""
        out = position_attention(
            self._tokens(self.query(x)),
            self._tokens(self.key(x)),
            self._tokens(self.value(x)),
            scale=self.scale,
            impl=self.impl,
        )
        out = out.transpose(2, 3).reshape(x.shape)
        return self.out_proj(out) if self.out_proj is not None else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + gamma * attend(x)`` (DANet eq. 2 / MPU-Net eq. 9)."""
        return x + self.gamma * self.attend(x)
