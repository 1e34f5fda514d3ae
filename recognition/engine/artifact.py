"""Build and verify a model's artifacts: trace and freeze it to TorchScript, export it to
ONNX, check both against the eager model, and hand the finished build to the store.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch
import torchvision
from torch import nn

from .manifest import ARTIFACT_NAME, ONNX_NAME, ArtifactError, Manifest
from .model_store import install
from .preprocess import Preprocessing
from .weights import sha256_file

# TorchScript is one of the two artifacts (a single self-contained file, loadable
# without Python model code); torch 2.14 warns on every use that it is deprecated.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)

MAX_ABS_DIFF = 1e-4


def compile_module(model: nn.Module, crop: int) -> torch.jit.ScriptModule:
    """Trace and freeze (weights become constants, dead code goes)."""
    example = torch.randn(1, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    # Not under no_grad: a module frozen there saves but fails to load again (torch 2.14).
    with torch.inference_mode(False):
        return torch.jit.freeze(torch.jit.trace(model.eval(), example))


def load_for_inference(path: Path) -> torch.jit.ScriptModule:
    """Load an artifact and optimise it for CPU inference (conv/bn folding, MKLDNN
    prepacking). The optimised graph cannot be saved and loaded back in torch 2.14
    ("required keyword attribute 'value' is undefined"), so this pass runs at load."""
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode(False):
        return torch.jit.optimize_for_inference(module.eval())


def export_onnx(model: nn.Module, path: Path, crop: int) -> None:
    """The same network as ONNX with a dynamic batch axis, for ONNX Runtime."""
    example = torch.randn(1, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Padding slices that cannot be folded stay as ops: correct, only slower to say so.
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        # We choose the TorchScript-based exporter on purpose (see below); no need to nag.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # The TorchScript-based exporter: the dynamo one needs onnxscript and takes 5x longer.
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )


def onnx_session(path: Path, threads: int | None = None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or 0  # 0: one per core
    options.inter_op_num_threads = 1
    # Idle pool threads would otherwise spin for work, taking the CPU that the request
    # threads of the same process need for decoding and storage (bench/over_http.py).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def max_abs_diff(model: nn.Module, artifact_path: Path, crop: int) -> float:
    """How far the artifact, as the service will load it, is from the eager model, on
    fixed inputs, at batch sizes other than the traced one (the batch axis is dynamic)."""
    if artifact_path.suffix == ".onnx":
        session = onnx_session(artifact_path)

        def loaded(inputs: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {"input": inputs.numpy()})[0])

    else:
        loaded = load_for_inference(artifact_path)
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    with torch.no_grad():
        for batch in (1, 3):
            inputs = torch.randn(batch, 3, crop, crop, generator=generator)
            expected, actual = model.eval()(inputs), loaded(inputs)
            if actual.shape != expected.shape:
                raise ArtifactError(
                    f"The compiled model gives outputs of shape {tuple(actual.shape)}, "
                    f"the eager model {tuple(expected.shape)}."
                )
            worst = max(worst, float((actual - expected).abs().max()))
    return worst


def write_prepared(
    models_dir: Path,
    model: nn.Module,
    *,
    name: str,
    version: str,
    custom: bool,
    weights_sha256: str,
    weights_source: str,
    categories: list[str],
    preprocessing: Preprocessing,
    fine_tuning: dict | None = None,
) -> Manifest:
    """Compile, check and write artifact + manifest under a temporary name, then rename
    into place. Nothing is left behind when the check fails."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    key = f"{name}-{version}"
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=models_dir))
    try:
        artifact_path = staging / ARTIFACT_NAME
        torch.jit.save(compile_module(model, preprocessing.crop), str(artifact_path))
        onnx_path = staging / ONNX_NAME
        export_onnx(model, onnx_path, preprocessing.crop)
        diffs = {}
        for path in (artifact_path, onnx_path):
            diffs[path] = max_abs_diff(model, path, preprocessing.crop)
            if not diffs[path] <= MAX_ABS_DIFF:
                raise ArtifactError(
                    f"The compiled model {path.name} differs from the eager model by "
                    f"{diffs[path]:.3g} (more than {MAX_ABS_DIFF:g}); refusing to write it."
                )
        manifest = Manifest(
            name=name,
            version=version,
            custom=custom,
            weights_sha256=weights_sha256,
            weights_source=weights_source,
            artifact_sha256=sha256_file(artifact_path),
            torch_version=torch.__version__,
            torchvision_version=torchvision.__version__,
            categories=list(categories),
            preprocessing=preprocessing,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            max_abs_diff=diffs[artifact_path],
            directory=models_dir / key,
            onnx_sha256=sha256_file(onnx_path),
            onnx_max_abs_diff=diffs[onnx_path],
            fine_tuning=fine_tuning,
        )
        manifest.write_to(staging)
        install(staging, models_dir / key)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
