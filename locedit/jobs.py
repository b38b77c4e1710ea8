"""What every workflow script does around its real work: log to the rule's log file, set threads,
load the model its rule's params name, and stamp every table it writes with what made it
(:mod:`locedit.provenance`).

A script under ``workflow/scripts/`` reads only ``snakemake.params`` / ``input`` (so a setting
it reads is a param, and changing it reruns the job)::

    from locedit.jobs import job

    with job(snakemake):                              # stdout/stderr go to snakemake.log[0]
        model, tok = job_model(snakemake.input.model, snakemake.params.model)
        ...
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import traceback
from typing import Any, Iterator

import torch

from . import provenance
from .models import load_model

log = logging.getLogger("locedit")


@contextlib.contextmanager
def job(smk: Any) -> Iterator[None]:
    """Redirect output to the rule's log, set torch threads, and log the wall time or the error."""
    log_path = smk.log[0] if len(smk.log) else None
    stream = open(log_path, "a", buffering=1) if log_path else sys.stderr
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    torch.set_num_threads(max(1, int(smk.threads)))  # the rule's threads: model.threads where set (Snakefile)
    start = time.time()
    token = provenance.start(provenance.job_record(smk))  # every table the job writes carries it
    try:
        yield
        log.info("done in %.1f s", time.time() - start)
    except BaseException:
        traceback.print_exc(file=stream)
        raise
    finally:
        provenance.stop(token)
        sys.stdout, sys.stderr = old_out, old_err
        if log_path:
            stream.close()


def job_model(model_dir: str, m: dict[str, Any]):
    """The model and tokenizer from ``model_dir`` with the rule's model params (name, dtype, device)."""
    start = time.time()
    model, tok = load_model(model_dir, m.get("dtype", "float32"), m.get("device", "auto"))
    provenance.note("model", provenance.model_record(model, m["name"], m.get("dtype", "float32")))
    log.info("loaded %s (%s, %s) in %.1f s", m["name"], m.get("dtype"), next(model.parameters()).device,
             time.time() - start)
    return model, tok
