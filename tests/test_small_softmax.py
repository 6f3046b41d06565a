"""msgzoo's softmax / log-softmax over a short last dimension against torch's: values and gradients."""
import pytest
import torch

from msgzoo.modules.small_softmax import log_softmax, softmax


@pytest.mark.parametrize("width", [1, 2, 3, 5, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_and_gradients_match_torch(width, dtype):
    torch.manual_seed(width)
    logits = (torch.randn(4, 64, width, dtype=dtype) * 5).requires_grad_()
    weights = torch.randn(4, 64, width, dtype=dtype)
    for ours, theirs in ((softmax, lambda x: torch.softmax(x, -1)), (log_softmax, lambda x: torch.log_softmax(x, -1))):
        ours_value = ours(logits)
        (grad_ours,) = torch.autograd.grad((ours_value * weights).sum(), logits)
        theirs_value = theirs(logits)
        (grad_theirs,) = torch.autograd.grad((theirs_value * weights).sum(), logits)
        tol = {} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
        torch.testing.assert_close(ours_value, theirs_value, **tol)
        torch.testing.assert_close(grad_ours, grad_theirs, **tol)


def test_large_and_infinite_logits():
    """The shift by the row maximum: no overflow at large logits; -inf entries get probability 0."""
    logits = torch.tensor([[1000.0, 999.0], [-1000.0, -1001.0], [0.0, float("-inf")]])
    expected = torch.softmax(logits, -1)
    torch.testing.assert_close(softmax(logits), expected)
    torch.testing.assert_close(log_softmax(logits), torch.log_softmax(logits, -1))
    assert softmax(logits)[2, 1] == 0 and torch.isfinite(softmax(logits)).all()
