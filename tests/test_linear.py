import pytest
import torch

from vjepa_world.nn import linear as linear_module
from vjepa_world.nn.linear import Linear, cpu_has_native_bf16


@pytest.mark.parametrize("native", [False, True])
def test_bf16_linear_paths_agree_with_float32(monkeypatch, native):
    monkeypatch.setattr(linear_module, "cpu_has_native_bf16", lambda: native)
    layer = Linear(64, 32)
    x = torch.randn(8, 64)
    reference = layer(x)
    fast = layer.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert fast.dtype == torch.bfloat16
    assert ((fast.float() - reference).norm() / reference.norm()) < 1e-2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = layer.float()(x)
    assert autocast.dtype == torch.bfloat16
    assert ((autocast.float() - reference).norm() / reference.norm()) < 1e-2


def test_float32_is_untouched():
    layer = Linear(16, 4)
    x = torch.randn(3, 16)
    assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    assert isinstance(cpu_has_native_bf16(), bool)
