"""What every workflow script does around its real work: log to the rule's log file, set threads,
resolve the device and load the model its rule's params name, and stamp every table it writes with
what made it (:mod:`locedit.provenance`).

A script under ``workflow/scripts/`` reads only ``snakemake.params`` / ``input`` (so a setting
it reads is a param, and changing it reruns the job)::

    from locedit.jobs import job

    with job(snakemake):                              # stdout/stderr go to snakemake.log[0]
        checkpoint = CaseCheckpoint(snakemake.params.partial, {..., "device": device_stamp()})
        model, tok = job_model(snakemake.input.model, snakemake.params.model)
        ...

A job that runs the model (its rule has a ``model`` input and ``model`` params) or computes on its
device (a ``device`` param) resolves ``model.device`` at its start (:mod:`locedit.device`): the
first line of its log names the device, and a device that cannot be used here (``cuda`` on a
machine without a GPU) stops the job with one message, in the log and on stderr, before anything
else runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import resource
import sys
import time
import traceback
from typing import Any, Iterator

import torch

from locedit import provenance
from locedit.device import DeviceError, describe, resolve_device, stamp
from locedit.models import load_model

log = logging.getLogger("locedit")
_DEVICE: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar("locedit_job_device", default=None)


@contextlib.contextmanager
def job(smk: Any) -> Iterator[None]:
    """Redirect output to the rule's log, set torch threads, resolve a device job's device, and log
    the wall time or the error (a :class:`~locedit.device.DeviceError` as one line, no traceback)."""
    log_path = smk.log[0] if len(smk.log) else None
    stream = open(log_path, "a", buffering=1) if log_path else sys.stderr
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    torch.set_num_threads(max(1, int(smk.threads)))  # the rule's threads: model.threads where set (Snakefile)
    start = time.time()
    stop = None
    try:
        asked = _asked_device(smk)
        device = resolve_device(asked) if asked is not None else None
        if device is not None:
            log.info("device: %s (model.device %s)", describe(device), asked)
        device_token = _DEVICE.set(device)
        token = provenance.start(provenance.job_record(smk, device))  # every table the job writes carries it
        try:
            yield
            log.info("done in %.1f s; peak host memory %.2f GB", time.time() - start, peak_rss_gb())
            if torch.cuda.is_initialized():  # read by benchmarks/gpu.py
                log.info("%s: peak GPU memory %.0f MiB", smk.rule, torch.cuda.max_memory_allocated() / 2**20)
        finally:
            provenance.stop(token)
            _DEVICE.reset(device_token)
    except DeviceError as err:  # the config asks for a device this machine lacks: not a bug to trace back
        stop = err
        if log_path:
            print(f"locedit: {err}", file=stream)
    except BaseException:
        traceback.print_exc(file=stream)
        raise
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        if log_path:
            stream.close()
    if stop is not None:
        raise SystemExit(f"locedit: {stop}")  # printed once on stderr, exit status 1


def _asked_device(smk: Any) -> str | None:
    """The device a job asks for: a rule that runs the model (a ``model`` input and ``model`` params)
    its ``model.device``, one that only computes on the device its ``device`` param; else None."""
    if "device" in smk.params.keys():
        return smk.params.device
    if "model" in smk.params.keys() and "model" in smk.input.keys():
        return smk.params.model.get("device", "auto")
    return None


def job_device() -> torch.device:
    """The device the running job resolved at its start (:func:`job`)."""
    device = _DEVICE.get()
    if device is None:
        raise RuntimeError("job_device() is for jobs that run the model or compute on its device: call it inside "
                           "`with job(snakemake)` of a rule with a model input and model params, or a device param")
    return device


def device_stamp() -> str:
    """The running job's device as its checkpoints record it (:func:`locedit.device.stamp`):
    a checkpoint stamped with another device is discarded, never mixed in."""
    return stamp(job_device())


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (the kernel's high-water mark, in GiB): what
    benchmarks/scale.py compares with :mod:`locedit.plan`'s host figure."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def job_model(model_dir: str, m: dict[str, Any]):
    """The model and tokenizer from ``model_dir`` with the rule's model params (name, dtype), on the
    job's device (:func:`job_device`; ``m["device"]`` resolved here outside a job)."""
    start = time.time()
    device = _DEVICE.get() or resolve_device(m.get("device", "auto"))
    model, tok = load_model(model_dir, m.get("dtype", "float32"), str(device))
    provenance.note("model", provenance.model_record(model, m["name"], m.get("dtype", "float32")))
    log.info("loaded %s (%s, %s) in %.1f s", m["name"], m.get("dtype"), next(model.parameters()).device,
             time.time() - start)
    return model, tok
