"""The engine's defaults, each defined once. The settings, the commands and the engine's
own signatures all read them from here, so a default cannot differ between the web app
and the command line. Nothing here imports torch: the settings module reads it."""

# Labels returned per image when the caller does not say.
DEFAULT_TOP_K = 3

# Larger pictures are refused from their header, before a pixel is decoded.
DEFAULT_MAX_PIXELS = 40_000_000

# Micro-batching: images per forward pass, and how long a runner may wait for company
# (README, "Performance" and "Serving layout", measured with bench/layouts.py).
DEFAULT_MAX_BATCH = 8
DEFAULT_MAX_WAIT_MS = 5
# Backpressure: requests that may wait for or be in a forward pass at once (four full
# batches), and the longest one waits, before further ones are answered "overloaded".
# With the default 8 request threads per worker the bound is not reached; it is what keeps
# a layout with many more threads from building a line that grows without limit.
DEFAULT_MAX_QUEUE = 32
DEFAULT_WAIT_TIMEOUT_S = 30

# The runtimes that can execute a prepared model; ONNX Runtime is faster here at
# batch 1 and level at batch 8 (bench/engine.py).
TORCHSCRIPT = "torchscript"
ONNXRUNTIME = "onnxruntime"
BACKENDS = (TORCHSCRIPT, ONNXRUNTIME)
DEFAULT_BACKEND = ONNXRUNTIME
