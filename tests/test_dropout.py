"""
dropout.py's cheaper random bits keep nn.Dropout's distribution, scale and gradient;
attention drops its weights with it.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import dropout as dropout_module
from attention import causal_attention, causal_mask
from dropout import BITS, dropout, keep_threshold


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 1 / 3, 0.9, 1e-6, 0.999999])
def test_the_chance_of_keeping_is_exact_to_2_to_the_minus_32(p):
    assert abs(keep_threshold(p) / 2 ** BITS - (1 - p)) <= 2 ** -32
    assert 0 <= keep_threshold(p) <= 2 ** BITS


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_elements_are_kept_independently_with_probability_1_minus_p(p):
    torch.manual_seed(0)
    n = 2_000_001  # odd: the last 64-bit draw gives only one element
    kept = (dropout(torch.ones(n), p, True) != 0).double()
    q = 1 - p

    def close(count, expected_share, total):  # within 5 standard deviations of a binomial count
        return abs(count - expected_share * total) <= 5 * math.sqrt(total * expected_share * (1 - expected_share))

    assert close(kept.sum().item(), q, n)
    # the two halves of each 64-bit draw are independent of each other and of the next draw's
    even, odd = kept[0:-1:2], kept[1::2]
    assert close(even.sum().item(), q, len(even)) and close(odd.sum().item(), q, len(odd))
    assert close((even * odd).sum().item(), q * q, len(even))
    assert close((odd[:-1] * even[1:]).sum().item(), q * q, len(odd) - 1)
    assert close(((1 - even) * (1 - odd)).sum().item(), p * p, len(even))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_kept_elements_are_scaled_as_nn_dropout_scales_them_and_the_rest_are_zero(dtype):
    torch.manual_seed(1)
    x = torch.randn(64, 33, dtype=dtype) + 3  # no zeros: a zero output is a dropped element
    out = dropout(x, 0.1, True)
    kept = out != 0
    assert out.dtype == dtype and out.shape == x.shape and 0 < kept.sum() < x.numel()
    # nn.Dropout's formula (ATen's _dropout_impl): the mask in x's dtype divided by 1 - p, times x
    scale = torch.ones((), dtype=dtype).div_(0.9)
    assert torch.equal(out[kept], x[kept] * scale)


def test_the_gradient_is_the_mask_scaled():
    torch.manual_seed(2)
    x = torch.randn(1000, requires_grad=True)
    out = dropout(x, 0.3, True)
    upstream = torch.randn(1000)
    out.backward(upstream)
    kept = out.detach() != 0
    assert torch.equal(x.grad, torch.where(kept, upstream * torch.ones(()).div_(0.7), torch.zeros(())))


def test_the_same_seed_draws_the_same_mask_and_the_next_draw_another():
    x = torch.ones(10_000)
    torch.manual_seed(3)
    first, second = dropout(x, 0.5, True), dropout(x, 0.5, True)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.5, True), first)
    assert not torch.equal(first, second)


def test_off_in_evaluation_and_at_rate_zero_and_empty_inputs_pass():
    x = torch.randn(5, 7)
    assert dropout(x, 0.5, False) is x and dropout(x, 0.0, True) is x
    assert dropout(torch.ones(0, 4), 0.5, True).shape == (0, 4)


def test_off_the_cpu_it_is_torchs_own_dropout(monkeypatch):
    calls = []
    monkeypatch.setattr(dropout_module.F, "dropout", lambda x, p, training: calls.append((x.device.type, p)) or x)
    dropout(torch.ones(3, device="meta"), 0.2, True)
    assert calls == [("meta", 0.2)]


@pytest.mark.parametrize("first_query, T, S", [(None, 9, 9), (None, 4, 9), (3, 5, 9)])
def test_attention_drops_its_weights_with_dropout_py_after_the_masked_softmax(first_query, T, S):
    torch.manual_seed(4)
    q, k, v = torch.randn(2, 3, T, 8), torch.randn(2, 3, S, 8), torch.randn(2, 3, S, 8)
    mask = causal_mask(16)
    torch.manual_seed(5)
    out = causal_attention(q, k, v, mask, 0.2, first_query=first_query)
    first = S - T if first_query is None else first_query
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(8)
    weights = scores.masked_fill(mask[0, 0, first:first + T, :S] == 0, float("-inf")).softmax(-1)
    torch.manual_seed(5)
    assert torch.allclose(out, dropout(weights, 0.2, True) @ v, atol=1e-6)
    assert torch.allclose(causal_attention(q, k, v, mask, 0.0, first_query=first_query), weights @ v, atol=1e-6)


@pytest.mark.parametrize("dropout_p", [0.0, 0.1])
def test_under_bf16_autocast_a_cpu_attends_in_fp32(dropout_p):
    torch.manual_seed(6)
    q, k, v = (torch.randn(2, 4, 12, 16).bfloat16() for _ in range(3))
    mask = causal_mask(16)
    torch.manual_seed(7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = causal_attention(q, k, v, mask, dropout_p)
    torch.manual_seed(7)
    expected = causal_attention(q.float(), k.float(), v.float(), mask, dropout_p)
    assert out.dtype == torch.float32 and torch.allclose(out, expected, atol=1e-6)
