"""Forward hooks by module name: every call recorded, hooks removed on exit and on error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from salus.errors import InvalidNameError
from salus.policies import capture_modules
from salus.policies.capture import capture, resolve_module


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 5), nn.Tanh())
        self.head = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor, repeats: int = 1) -> torch.Tensor:
        h = self.body(x)
        out = self.head(h)
        for _ in range(repeats - 1):
            out = self.head(h + out.sum())
        return out


def hooks_left(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in net.modules())


def test_records_every_call_input_and_output() -> None:
    net = Net()
    x = torch.randn(4, 3)
    with capture_modules(net, ["head", "body.0"]) as buf:
        out = net(x, repeats=3)
    assert buf.count("head") == 3 and buf.count("body.0") == 1
    assert buf.inputs("head").shape == (3, 4, 5)
    assert buf.outputs("head").shape == (3, 4, 2)
    torch.testing.assert_close(buf.outputs("head")[-1], out)
    torch.testing.assert_close(buf.inputs("body.0")[0], x)
    assert not buf.outputs("head").requires_grad


def test_hooks_removed_on_exit_and_on_exception() -> None:
    net = Net()
    with capture(net, ["head"]):
        assert hooks_left(net) == 1
    assert hooks_left(net) == 0
    with pytest.raises(RuntimeError, match="boom"), capture(net, ["head", "body"]):
        assert hooks_left(net) == 2
        raise RuntimeError("boom")
    assert hooks_left(net) == 0
    with capture(net, ["head"]) as buf:
        pass
    net(torch.randn(1, 3))  # outside the block nothing is recorded
    assert buf.count("head") == 0


def test_unknown_module_name_lists_valid_names() -> None:
    net = Net()
    with pytest.raises(InvalidNameError, match="head") as info, capture(net, ["action_out_proj"]):
        pass
    assert "body.0" in info.value.valid
    assert hooks_left(net) == 0
    with pytest.raises(InvalidNameError):
        resolve_module(net, "")
