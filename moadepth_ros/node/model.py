"""The depth node's model: the estimator its parameters ask for, with one log line per choice made.

Kept apart from the node so the start-up messages live in one place; torch is imported only where
the settings need it (:mod:`moadepth_core.runtime.loader`).
"""

from __future__ import annotations

from collections.abc import Callable

from moadepth_core.errors import UNTRAINED_WARNING, DataError
from moadepth_core.runtime.choice import choose_runtime, explain_choice
from moadepth_core.runtime.graph_cache import default_cache_dir
from moadepth_core.runtime.loader import CachedGraphEstimator, load_estimator


def load_model(c: dict, logger, on_worker: Callable[[Callable[[], object]], object]):
    """The estimator for parameters ``c``, built by ``on_worker`` (the inference thread, where every
    later forward runs); MoadepthError (untrained, device, checkpoint) propagates."""
    chosen = choose_runtime(c["device"], c["precision"], c["backend"])
    logger.info(explain_choice(c["device"], c["precision"], c["backend"], chosen))
    _, precision, backend = chosen
    if backend == "torch_compile":
        logger.info("backend torch_compile: compiling the network before the first frame "
                    "(tens of seconds; Inductor caches kernels on disk for later starts)")
    elif backend == "onnxruntime":
        cache = default_cache_dir()
        logger.info(
            f"backend onnxruntime {precision}: a checkpoint's first start exports it to ONNX"
            f"{' and quantises it' if precision == 'int8' else ''} (tens of seconds); later starts "
            f"read it from {cache if cache else 'nowhere: MOADEPTH_ONNX_CACHE is empty, no cache'}")
    if bool(c["input_height"]) != bool(c["input_width"]):
        raise DataError(f"input_height {c['input_height']} and input_width {c['input_width']}: set both "
                        f"(multiples of 32) or leave both 0 for the checkpoint's training size")
    input_size = (c["input_height"], c["input_width"]) if c["input_height"] else None
    est = on_worker(lambda: load_estimator(
        c["checkpoint"] or None, allow_untrained=c["allow_untrained"], device=c["device"],
        precision=c["precision"], backend=c["backend"], input_size=input_size))
    if isinstance(est, CachedGraphEstimator):
        logger.info(f"started from the graph cached for this checkpoint ({est.graph_file}), "
                    f"without building the network or importing torch")
    if est.untrained:
        logger.error(UNTRAINED_WARNING)
    if c["focal_scaling"] and est.train_focal_px is None:
        logger.warning("the checkpoint stores no training focal length: focal_scaling is off")
    logger.info(
        f"model {c['checkpoint'] or '(untrained)'} on {est.device} {est.precision} ({est.backend}), input "
        f"{est.model_size[1]}x{est.model_size[0]}, training focal {est.train_focal_px} px")
    return est
