"""graph.gradient on data-movement operators, against torch autograd, at two batch sizes."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from gradient_cases import Function, assert_close, check_two_batches, export, run_gradient, torch_vjp


INDEX = torch.tensor([[0, 2], [2, 2]])  # repeats: their gradients add up

CASES = {
    "reshape_flatten_transpose": (lambda x: torch.flatten(x.reshape(x.shape[0], 4, 3).transpose(1, 2), 1) * 2,
                                  (3, 4)),
    "squeeze_unsqueeze": (lambda x: x.unsqueeze(1).squeeze(1) ** 2, (3, 4)),
    "concat_split": (lambda x: torch.cat([x, x * 2, x[:, :1]], 1).split([2, 3, 4], 1)[1] ** 2, (4,)),
    "slice_unit_steps": (lambda x: x[:, 1:-1, 2:] ** 2, (5, 6)),
    "slice_step_two": (lambda x: x[:, ::2] ** 2, (7,)),
    "gather_class_token": (lambda x: x[:, 0] * x[:, -1], (5, 3)),
    "gather_repeated_indices": (lambda x: x[:, INDEX] ** 2, (4,)),
    "expand": (lambda x: x[:, :, None].expand(-1, -1, 5) * torch.arange(5.0), (3,)),
    "pad_constant": (lambda x: F.pad(x, (1, 2, 0, 1)) ** 2, (3, 4)),
    "pad_reflect": (lambda x: F.pad(x, (2, 1), mode="reflect") ** 2, (2, 5)),
    "resize_nearest": (lambda x: F.interpolate(x, scale_factor=2, mode="nearest") ** 2, (2, 3, 4)),
    "resize_bilinear": (lambda x: F.interpolate(x, size=(7, 5), mode="bilinear") ** 2, (2, 3, 4)),
    "resize_bilinear_align_corners": (lambda x: F.interpolate(x, scale_factor=2.5, mode="bilinear",
                                                              align_corners=True) ** 2, (1, 4, 4)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_data_movement_rule_matches_torch(case):
    function, shape = CASES[case]
    module = Function(function)
    check_two_batches(module, shape, np.random.default_rng(5))


def test_slice_with_dynamic_sequence_length():
    """Constant starts/ends on a dynamic axis: the pads are computed from Shape at run time."""
    module = Function(lambda x: x[:, 1:-2] ** 2)
    rng = np.random.default_rng(6)
    proto = export(module, (torch.zeros(2, 6),), ["x"], ["out"], {"x": {0: "b", 1: "s"}, "out": {0: "b", 1: "s"}})
    for length in (4, 9):
        x = rng.standard_normal((3, length)).astype(np.float32)
        seeds, grads = run_gradient(proto, {"x": x}, "x")
        assert_close(grads["x"], torch_vjp(module, [x], seeds["out__seed"])[0])
