"""IO binding: inputs placed on the model's device once, outputs fetched only when asked.

Three ways to run a session, all through ONNX Runtime's ``IOBinding`` so that the CUDA code
paths are the CPU code paths with another device name (``"cuda"`` or ``"cpu"``):

- :func:`run_bound`: each call binds its inputs. Arrays wrapped in :class:`Resident` (the
  explained rows of a fused perturbation model, say) are copied to the device on first use
  and reused by every later batch.
- :class:`StaticBinding`: inputs and outputs live in buffers allocated once per batch shape,
  refilled in place each call. CUDA graphs need this: a captured graph replays fixed device
  addresses. On the CPU it runs the same code, which is how the tests cover it.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

__all__ = ["Resident", "StaticBinding", "run_bound"]


class Resident:
    """An array kept on each device it is used on, copied there once.

    Parameters
    ----------
    array : ndarray
        The host copy (made contiguous).

    Examples
    --------
    >>> value = Resident(np.arange(3, dtype=np.float32))
    >>> value.on("cpu", 0).numpy()
    array([0., 1., 2.], dtype=float32)
    """

    def __init__(self, array: np.ndarray):
        self.array = np.ascontiguousarray(array)
        self._copies: dict[tuple[str, int], ort.OrtValue] = {}

    def on(self, device: str, device_id: int) -> ort.OrtValue:
        key = (device, device_id)
        if key not in self._copies:
            self._copies[key] = ort.OrtValue.ortvalue_from_numpy(self.array, device, device_id)
        return self._copies[key]


def run_bound(session: ort.InferenceSession, feeds: dict, output_names: list[str], device: str, device_id: int):
    """Run ``session`` through an IO binding on ``device`` ("cuda" or "cpu").

    Numpy inputs are copied to the device (bound in place on the CPU), :class:`Resident`
    inputs are reused, outputs are allocated by ONNX Runtime on the device and copied back.
    """
    binding = session.io_binding()
    for name, value in feeds.items():
        if isinstance(value, Resident):
            binding.bind_ortvalue_input(name, value.on(device, device_id))
        elif device == "cpu":
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        else:
            binding.bind_ortvalue_input(
                name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), device, device_id)
            )
    for name in output_names:
        binding.bind_output(name, device, device_id)
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()


class StaticBinding:
    """Fixed input and output buffers per batch shape, refilled in place for every run.

    With ``graph_ids=True`` each distinct set of input shapes gets its own ``gpu_graph_id``
    run option, so a CUDA-graph session captures one graph per padded batch shape and replays
    it afterwards. Output shapes are learned from one ordinary run per input shape.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
    device : {"cuda", "cpu"}
    device_id : int
    graph_ids : bool
        Tag runs with ``gpu_graph_id`` (CUDA graphs).
    """

    def __init__(self, session, device: str, device_id: int, *, graph_ids: bool = False):
        self.session, self.device, self.device_id, self.graph_ids = session, device, device_id, graph_ids
        self._slots: dict[tuple, tuple] = {}

    def run(self, feeds: dict, output_names: list[str]) -> list[np.ndarray]:
        arrays = {
            name: value.array if isinstance(value, Resident) else np.ascontiguousarray(value)
            for name, value in feeds.items()
        }
        key = (tuple(output_names),) + tuple(sorted((name, a.shape, a.dtype.str) for name, a in arrays.items()))
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self._allocate(arrays, output_names, len(self._slots))
        binding, inputs, outputs, options = slot
        for name, array in arrays.items():
            inputs[name].update_inplace(array)
        self.session.run_with_iobinding(binding, options)
        return [value.numpy().copy() for value in outputs]

    def _allocate(self, arrays: dict, output_names: list[str], graph_id: int):
        shapes = self.session.run(output_names, arrays)  # the output shapes of this input shape
        binding = self.session.io_binding()
        inputs = {}
        for name, array in arrays.items():
            inputs[name] = ort.OrtValue.ortvalue_from_numpy(array, self.device, self.device_id)
            binding.bind_ortvalue_input(name, inputs[name])
        outputs = []
        for name, example in zip(output_names, shapes):
            value = ort.OrtValue.ortvalue_from_shape_and_type(example.shape, example.dtype, self.device, self.device_id)
            binding.bind_ortvalue_output(name, value)
            outputs.append(value)
        options = ort.RunOptions()
        if self.graph_ids:
            options.add_run_config_entry("gpu_graph_id", str(graph_id))
        return binding, inputs, outputs, options
