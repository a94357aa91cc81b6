"""Triton python-backend model: one ocrfleet TorchScript network (detection, direction or recognition).

Every model in this repository (``ocr_det``, ``ocr_cls``, ``ocr_rec``) runs this same file as its
``1/model.py``. It loads ``model.<device>.pt`` from the version directory (placed there by
``python -m ocrfleet_worker.triton_repository render``), once per instance, on the instance's
device: the GPU Triton assigned for ``KIND_GPU``, the CPU otherwise. Its input is ``x`` and its
output ``y``, of the dtypes the config declares: ``ocr_det`` takes uint8 pages N x H x W x 3 and
gives a uint8 map N x H x W; ``ocr_cls`` and ``ocr_rec`` take float32 N x 3 x 48 x W (the
networks' served ends, ``ocrfleet_worker.model.ends``).

With dynamic batching Triton hands ``execute`` several requests at once; requests of equal shape
are concatenated into one batch for the network and the result split back per request.
Requests of other shapes run as their own batches.

Settings, from the config's ``parameters``: ``torch_threads`` (intra-op threads of this
instance; match the container's CPU limit divided by the instances that run at once).
Only torch, numpy and Triton's utilities are imported: the same file runs in NVIDIA's
tritonserver image with torch installed.
"""

import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        threads = int(parameters.get("torch_threads") or 1)
        torch.set_num_threads(max(1, threads))
        torch._C._jit_set_profiling_executor(False)  # no re-specialisation per input shape
        if args.get("model_instance_kind") == "GPU":
            self.device = torch.device("cuda", int(args.get("model_instance_device_id") or 0))
        else:
            self.device = torch.device("cpu")
        directory = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(directory, f"model.{self.device.type}.pt")
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(
                f"{path} is missing: render the repository for this device "
                "(python -m ocrfleet_worker.triton_repository render --kind ...)")
        self.module = torch.jit.load(path, map_location=self.device).eval()
        self.channels_last = self.device.type == "cpu"

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "x").as_numpy() for r in requests]
        outputs = [None] * len(inputs)
        groups = {}
        for i, array in enumerate(inputs):
            groups.setdefault(array.shape[1:], []).append(i)
        for members in groups.values():
            batch = torch.from_numpy(np.ascontiguousarray(np.concatenate([inputs[i] for i in members])))
            batch = batch.to(self.device)
            if self.channels_last and batch.dtype == torch.float32:  # pages come NHWC already
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                result = self.module(batch).cpu().numpy()
            start = 0
            for i in members:
                count = inputs[i].shape[0]
                outputs[i] = np.ascontiguousarray(result[start : start + count])
                start += count
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("y", out)]) for out in outputs]

    def finalize(self):
        self.module = None
